"""Every benchmark runs at the smallest size, so that `make bench` cannot break unnoticed: one
`python -m bench.run --tiny` of them all, and a test per benchmark checking what it wrote."""

from __future__ import annotations

import json

import pytest

from bench.common import TINY
from bench.run import BENCHES, write_summary
from tests import cli

pytestmark = pytest.mark.process


def _shaper(r: dict) -> None:
    assert all(rate["measured_mbps"] > 0 for rate in r["rates"])
    assert all(v > 0 for v in r["transport_cpu_s_per_mb"].values())


def _memory(r: dict) -> None:
    assert r["run_status"] == "ok" and r["nodes"] == TINY.nodes


def _cifar_shard(r: dict) -> None:
    assert r["shard_images"] > 0


def _efficiency(r: dict) -> None:
    assert r["status"] == "ok" and r["compute_limit_tdf"] > 0
    assert r["tdf"] == float(TINY.tdf)  # fixed at tiny size: no calibration
    assert r["efficiency"] == pytest.approx(r["compute_limit_tdf"] / r["tdf"])


def _fidelity(r: dict) -> None:
    assert set(r["algorithms"]) == set(TINY.fidelity_algorithms)
    divshare = r["algorithms"]["divshare"]["runs"]
    assert divshare["2a"]["tdf"] == pytest.approx(2 * divshare["a"]["tdf"])
    assert divshare["step"]["tdf"] == pytest.approx(2 * divshare["a"]["tdf"])
    assert divshare["virtual"]["clock"] == "virtual" and divshare["virtual"]["tdf"] is None
    assert all(run["status"] == "ok" for run in divshare.values())


def _scale(r: dict) -> None:
    assert r["run_status"] == "ok" and r["nodes"] == TINY.scale_nodes
    assert r["connections_opened"] > 0 and r["clock"] == "virtual"


def _virtual(r: dict) -> None:
    for case, row in r["table"].items():
        assert row["virtual"]["status"] == row["wall"]["status"] == "ok", case
        assert row["virtual"]["clock"] == "virtual" and row["wall"]["clock"] == "wall"
        assert row["virtual"]["efficiency"] > 0 and row["wall"]["tdf"] >= 1.0
    assert r["targets_met"]["repeats_bit_for_bit"]  # two runs, the same models and records
    assert r["default_run"]["status"] == "ok"
    assert set(r["advances_per_round_60"]) == set(TINY.virtual_round_algorithms)


def _nolag(r: dict) -> None:
    expected = {f"{e}/{a}" for e in TINY.nolag_experiments for a in TINY.nolag_algorithms}
    assert set(r["runs"]) == expected
    assert all(run["status"] == "ok" for run in r["runs"].values())


def _reliability(r: dict) -> None:
    runs = TINY.reliability_runs
    assert r["kills"]["all_ok"] and r["kills"]["runs_ok"] == f"{runs} of {runs}", r["kills"]
    assert r["fuzz"]["all_counted"], r["fuzz"]
    assert r["fuzz"]["malformed_counted"] == r["fuzz"]["frames"] == TINY.fuzz_frames
    assert all(count > 0 for count in r["fuzz"]["by_kind"].values())
    # Every trial's summary parses; how soon every process was gone is the benchmark's figure
    # (its target), not this test's verdict, which must not depend on the machine's speed.
    trials = r["ctrl_c"]["trials"]
    assert len(trials) == TINY.ctrl_c_trials and all(t["summary_parses"] for t in trials)


def _cluster(r: dict) -> None:
    runs = r["runs"]
    assert set(runs) == {"local", "ray"} and r["ray_nodes"] == TINY.cluster_ray_nodes
    assert all(run["status"] == "ok" for run in runs.values()), runs
    assert runs["ray"]["tdf"] == pytest.approx(runs["local"]["tdf"])  # both at TINY.tdf


def _codecs(r: dict) -> None:
    assert set(r["codecs"]) == {"full", "topk_0.1", "random_0.1", "quantize_4bit"}
    assert r["round_cpu_ms"] > 0 and isinstance(r["meets_target"], bool)
    full, topk = r["codecs"]["full"], r["codecs"]["topk_0.1"]
    assert topk["message_bytes"] < full["message_bytes"] == 4 * full["model_values"]
    assert all(
        row["encode_us"] > 0 and row["share_of_round_cpu"] > 0 for row in r["codecs"].values()
    )


CHECKS = {
    "shaper": _shaper,
    "memory": _memory,
    "cifar_shard": _cifar_shard,
    "virtual": _virtual,
    "efficiency": _efficiency,
    "efficiency_cifar": _efficiency,
    "fidelity": _fidelity,
    "scale": _scale,
    "codecs": _codecs,
    "nolag": _nolag,
    "reliability": _reliability,
    "cluster": _cluster,
}


def test_every_benchmark_has_its_check():
    assert set(CHECKS) == set(BENCHES)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Every benchmark at its tiny size in one `python -m bench.run --tiny` (one interpreter,
    not one per benchmark): (results folder, exit code, output)."""
    results = tmp_path_factory.mktemp("bench")
    code, out = cli.run("bench.run", "--tiny", "--results", str(results), *BENCHES, timeout=1100)
    return results, code, out


@pytest.mark.timeout(1200)  # the first one runs them all
@pytest.mark.parametrize("name", list(BENCHES))
def test_the_benchmark_runs_at_a_tiny_size_and_writes_its_results(tiny, name):
    results, code, out = tiny
    path = results / f"{name}.json"
    assert path.is_file(), f"no {path.name} (bench.run exited {code}):\n{out[-4000:]}"
    record = json.loads(path.read_text())
    assert record["benchmark"] == name and record["machine"]["cores_available"] >= 1
    assert "--tiny" in record["command"] and record["elapsed_s"] > 0
    CHECKS[name](record)


def test_every_benchmark_ran_and_the_summary_has_each(tiny):
    results, code, out = tiny
    assert code == 0, out[-4000:]
    summary = (results / "SUMMARY.md").read_text()
    assert all(f"## {name}" in summary for name in BENCHES)


def test_the_summary_has_a_section_per_result_with_its_verdict(tmp_path):
    for name, met in (("shaper", True), ("memory", False)):
        record = {"benchmark": name, "command": f"python -m bench.run {name}", "date": "d"}
        record |= {"machine": {"host": "h", "cores_available": 2}, "meets_target": met}
        (tmp_path / f"{name}.json").write_text(json.dumps(record | {"figure": 1.5}))
    write_summary(tmp_path)
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert "## memory (MISSES target)" in summary and "## shaper (meets target)" in summary
    assert summary.index("## memory") < summary.index("## shaper") and '"figure": 1.5' in summary
