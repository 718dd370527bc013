"""Every algorithm draws the models together: 4 nodes on the in-memory twin (the real `Node`s,
planned from the real config, on a virtual clock), their final consensus distance measured as
the launcher's report measures it, against the same nodes training alone. That the processes
compute what the twin computes is tests/test_virtual_time.py's and the equivalence tests'."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from launcher.report.curves import consensus_curve
from node.algorithms import builtin_algorithms
from tests.node import twin

# Every built-in algorithm but the reference; those with a `degree` get 2 of the 3 peers.
ALGORITHMS = sorted(name for name in builtin_algorithms() if name != "local")
DEGREE = {
    name: 2
    for name, cls in builtin_algorithms().items()
    if "degree" in {f.name for f in dataclasses.fields(cls.config_class)}
}
NODES = 4
COMMON = [
    f"num_nodes={NODES}",
    "duration=4",
    "eval.interval=1",
    "network=uniform",
    "dataset.num_samples=3000",
]


@dataclasses.dataclass
class Outcome:
    result: twin.Twin
    consensus: list[dict]  # as summary.json's: {t, distance} at each snapshot instant

    def total(self, key: str) -> int:
        return sum(self.result.stats(n).totals()[key] for n in range(NODES))


# Algorithms that send through a codec, with one that compresses (label: algorithm, overrides)
COMPRESSED = {
    "choco+topk": ("choco", ["sharing=topk", "sharing.fraction=0.1"]),
    "choco+quantize": ("choco", ["sharing=quantize", "sharing.bits=2"]),
    "dpsgd+topk": ("dpsgd", ["sharing=topk", "sharing.fraction=0.1"]),
    "el+random": ("el", ["sharing=random", "sharing.fraction=0.5"]),  # 10%: too slow in 4 s
}


def run(algorithm: str, tmp: Path, data: Path, *extra: str, label: str = "") -> Outcome:
    args = [*COMMON, f"algorithm={algorithm}", *extra]
    if algorithm in DEGREE:
        args.append(f"algorithm.degree={DEGREE[algorithm]}")
    label = label or algorithm
    run_dir = tmp / label
    result = twin.run(twin.plan(run_dir, data, *args))
    assert not result.errors, result.errors
    # The report reads the snapshots an evaluator kept; the twin's nodes leave them where
    # they wrote them.
    view = tmp / f"{label}-view" / "snapshots"
    view.mkdir(parents=True)
    (view / "kept").symlink_to(run_dir / "snapshots", target_is_directory=True)
    return Outcome(result, consensus_curve(view.parent, NODES))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("consensus")


@pytest.fixture(scope="module")
def alone(workdir, shared_data_root) -> Outcome:
    """The reference: the same nodes, data and seed, training without any communication."""
    return run("local", workdir, shared_data_root)


def final_distance(outcome: Outcome) -> float:
    curve = outcome.consensus
    assert curve and curve[-1]["t"] == pytest.approx(4.0), curve
    return curve[-1]["distance"]


def test_nodes_training_alone_drift_apart(alone):
    curve = alone.consensus
    assert curve[0]["distance"] == 0.0  # one seed: one initial model everywhere
    assert curve[-1]["distance"] > curve[1]["distance"] > 0
    assert alone.total("bytes_sent") == 0


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, *COMPRESSED])
def test_algorithm_keeps_models_closer_than_training_alone(
    algorithm, workdir, alone, shared_data_root
):
    name, extra = COMPRESSED.get(algorithm, (algorithm, []))
    outcome = run(name, workdir, shared_data_root, *extra, label=algorithm)
    assert outcome.total("bytes_delivered") > 0 and outcome.total("messages_malformed") == 0
    # Communication must pull the models together: well under the distance of no averaging.
    assert final_distance(outcome) < 0.5 * final_distance(alone), (
        outcome.consensus,
        alone.consensus,
    )
    rounds = outcome.result.records(1)
    assert len(rounds) >= 4  # 0.62 s rounds over 4 s (a synchronous round may wait a little)
    missed = ("missed_models", "missed_peers", "missed_relays")
    assert not any(r.get(key) for r in rounds for key in missed)


@pytest.mark.parametrize("label", ["choco+quantize", "dpsgd+topk"])
def test_the_bytes_counted_are_the_codecs_declared_sizes_plus_headers(
    label, workdir, shared_data_root
):
    """Every message of these carries one codec message: the run's counts of payload values
    and metadata are the declared sizes times the messages sent, the rest is headers."""
    name, extra = COMPRESSED[label]
    outcome = run(name, workdir, shared_data_root, *extra, label=f"{label}-bytes")
    node = outcome.result.nodes[0]
    values, metadata = node.algorithm.codec.message_bytes()
    sent = outcome.total("messages_sent")
    assert sent > 0 and metadata > 0
    assert outcome.total("bytes_sent_values") == sent * values
    assert outcome.total("bytes_sent_metadata") == sent * metadata
    headers = outcome.total("bytes_sent_headers")
    assert 0 < headers < sent * 200  # a msgpack header per message: ~100 bytes
    assert outcome.total("bytes_sent") == sent * (values + metadata) + headers
