"""Every algorithm for real: 4 node processes through the CLI (in virtual time, the default: no
calibration, per-step algorithms as cheap as the others); their models must draw together."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from node.algorithms import builtin_algorithms
from tests import cli

pytestmark = pytest.mark.process
# Every built-in algorithm but the reference; those with a `degree` get 2 of the 3 peers.
ALGORITHMS = sorted(name for name in builtin_algorithms() if name != "local")
DEGREE = {
    name: 2
    for name, cls in builtin_algorithms().items()
    if "degree" in {f.name for f in dataclasses.fields(cls.config_class)}
}
COMMON = [
    "num_nodes=4",
    "duration=4",
    "eval.interval=1",
    "eval.keep_snapshots=true",
    "network=uniform",
    "dataset.num_samples=3000",
]


def run(algorithm: str, tmp: Path, data: Path) -> dict:
    args = [*COMMON, f"algorithm={algorithm}"]
    if algorithm in DEGREE:
        args.append(f"algorithm.degree={DEGREE[algorithm]}")
    args += [f"data_root={data}", f"hydra.run.dir={tmp / algorithm}"]
    code, out = cli.run("launcher", *args, timeout=180)
    assert code == 0, out
    return json.loads((tmp / algorithm / "summary.json").read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("consensus")


@pytest.fixture(scope="module")
def alone(workdir) -> dict:
    """The reference: the same nodes, data and seed, training without any communication."""
    return run("local", workdir, workdir / "data")


def final_distance(summary: dict) -> float:
    curve = summary["consensus"]
    assert curve and curve[-1]["t"] == pytest.approx(4.0), curve
    return curve[-1]["distance"]


def test_nodes_training_alone_drift_apart(alone):
    curve = alone["consensus"]
    assert curve[0]["distance"] == 0.0  # one seed: one initial model everywhere
    assert curve[-1]["distance"] > curve[1]["distance"] > 0
    assert alone["totals"]["bytes_sent"] == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_algorithm_keeps_models_closer_than_training_alone(algorithm, workdir, alone):
    summary = run(algorithm, workdir, workdir / "data")
    assert summary["status"] == "ok" and summary["algorithm"] == algorithm
    assert summary["totals"]["bytes_delivered"] > 0 and summary["totals"]["messages_malformed"] == 0
    # Communication must pull the models together: well under the distance of no averaging.
    assert final_distance(summary) < 0.5 * final_distance(alone), (
        summary["consensus"],
        alone["consensus"],
    )
    rounds = [
        json.loads(line)
        for line in (Path(summary["run_dir"]) / "nodes" / "001.jsonl").read_text().splitlines()
    ]
    assert len(rounds) >= 4  # 0.62 s rounds over 4 s (a synchronous round may wait a little)
    missed = ("missed_models", "missed_peers", "missed_relays")
    assert not any(r.get(key) for r in rounds for key in missed)
