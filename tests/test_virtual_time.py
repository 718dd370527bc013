"""Virtual time through the real CLI (`clock=virtual`): the launcher keeps the run's clock and
node processes compute what the in-memory twin computes, bit for bit, every algorithm and a
scenario; two runs of one config write the same records; a node killed from outside leaves the
others to go on; one that never goes idle is named, not waited on for ever."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from node.files import read_jsonl
from tests import cli
from tests.node import twin
from tests.node.test_runtime_equivalence import ALGORITHMS, GOLDEN, PACED
from tests.test_golden import models_digest

# golden_runs launches seven runs inside the first test's time limit
pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]
VIRTUAL = ["clock=virtual", "eval.keep_snapshots=true", "eval.workers=1"]
WALL_FIELDS = {"cpu_per_step", "gate_wait_s", "wall_s"}  # what a round took on the wall clock


@pytest.fixture(scope="module")
def data_root(shared_data_root):
    return shared_data_root


def launch(run: Path, data_root: Path, *overrides: str, timeout: float = 300) -> str:
    code, out = cli.run(
        "launcher", *VIRTUAL, *overrides, f"data_root={data_root}", f"hydra.run.dir={run}",
        timeout=timeout,
    )  # fmt: skip
    assert code == 0, out
    return out


def records(run: Path) -> dict[str, list[dict]]:
    """Every node's round records, what the wall clock measured left out."""
    return {
        path.name: [{k: v for k, v in r.items() if k not in WALL_FIELDS} for r in read_jsonl(path)]
        for path in sorted((run / "nodes").glob("*.jsonl"))
    }


@pytest.fixture(scope="module")
def golden_runs(tmp_path_factory, data_root) -> dict[str, Path]:
    """Each algorithm's paced 4-node run of the twin's equivalence test, as node processes."""
    runs = {}
    for algorithm in sorted(ALGORITHMS):
        runs[algorithm] = tmp_path_factory.mktemp(f"virtual-{algorithm}") / "run"
        launch(runs[algorithm], data_root, *PACED, *ALGORITHMS[algorithm])
    return runs


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_node_processes_compute_the_twins_recorded_models(algorithm, golden_runs):
    recorded = json.loads(GOLDEN.read_text())[algorithm]
    assert models_digest(golden_runs[algorithm] / "snapshots" / "kept") in recorded


def test_a_second_run_of_one_config_writes_the_same_models_and_records(
    golden_runs, tmp_path, data_root
):
    """AD-PSGD: pongs answered at delivery, FIFO backlogs, pings at random peers."""
    first = golden_runs["adpsgd"]
    launch(tmp_path / "again", data_root, *PACED, *ALGORITHMS["adpsgd"])
    again = tmp_path / "again"
    assert models_digest(again / "snapshots" / "kept") == models_digest(
        first / "snapshots" / "kept"
    )
    assert records(again) == records(first)
    summary = json.loads((again / "summary.json").read_text())
    assert summary["clock_mode"] == "virtual" and summary["tdf"] is None
    assert summary["time"]["keeper"]["phases"] > 0 and summary["lag"]["max_behind_s"] == 0


SCENARIO = (
    "scenario.events=[{t: 0.1, leave: [1]}, {t: 0.3, join: [1], model: initial},"
    "{t: 0.2, partition: halves}, {t: 0.4, heal: true}, {t: 0.25, crash: [5]}]"
)
SCENARIO_RUN = [
    *PACED[1:],  # 6 nodes instead of 4
    "num_nodes=6",
    "duration=0.6",
    "algorithm=divshare",
    "algorithm.degree=2",
    SCENARIO,
]


def test_a_run_with_a_leave_a_partition_and_a_crash_computes_the_twins_models(tmp_path, data_root):
    expected = twin.run(twin.plan(tmp_path / "twin", data_root, *SCENARIO_RUN))
    assert not expected.errors
    run = tmp_path / "run"
    out = launch(run, data_root, *SCENARIO_RUN)
    assert "node 5 crashed at t=0.25 s, as scheduled" in out
    assert models_digest(run / "snapshots" / "kept") == models_digest(
        tmp_path / "twin" / "snapshots"
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["crashed"] == {"5": [0.25]}


def test_a_node_killed_from_outside_leaves_the_others_to_go_on(tmp_path, data_root):
    run = tmp_path / "run"
    proc = cli.start(
        "launcher", *VIRTUAL, "num_nodes=4", "algorithm.degree=2", "duration=6",
        "dataset.num_samples=3000", f"data_root={data_root}", f"hydra.run.dir={run}",
    )  # fmt: skip
    try:
        metrics = run / "nodes" / "002.jsonl"
        deadline = time.monotonic() + 240
        while not (metrics.exists() and len(read_jsonl(metrics)) >= 2):  # two rounds done
            assert time.monotonic() < deadline and proc.poll() is None, cli.finish(proc, 10)
            time.sleep(0.05)
        pids = json.loads((run / "pids.json").read_text())
        os.kill(pids["nodes"]["2"], signal.SIGKILL)
        out = cli.finish(proc, timeout=300)
    finally:
        cli.kill(proc)
    assert proc.returncode == 3, out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "degraded" and list(summary["failed_nodes"]) == ["2"]
    assert 0 < summary["departed"]["2"] < 6
    for node in (0, 1, 3):  # its last whole round (of 0.62 s) ends before 6
        assert read_jsonl(run / "nodes" / f"{node:03d}.jsonl")[-1]["t"] > 5.3
    assert summary["curve"][-1]["t"] == pytest.approx(6.0) and summary["curve"][-1]["nodes"] == 3


def test_a_node_that_never_goes_idle_is_named_and_stopped(tmp_path, data_root):
    run = tmp_path / "run"
    code, out = cli.run(
        "launcher", *VIRTUAL, "num_nodes=3", "duration=2", "algorithm=local",
        "algorithm._target_=tests.node.twin.Stubborn", "algorithm.local_steps=16",
        "dataset.num_samples=3000", "launch.stall_timeout=2", f"data_root={data_root}",
        f"hydra.run.dir={run}", timeout=300,
    )  # fmt: skip
    assert code == 3, out
    assert "virtual time stood still: nodes [1] did not go idle within 2 wall seconds" in out
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["failed_nodes"]) == ["1"]
    for node in (0, 2):  # rounds of 16 steps of 4.85 ms: the last ends at 1.94
        assert read_jsonl(run / "nodes" / f"{node:03d}.jsonl")[-1]["t"] > 1.9
