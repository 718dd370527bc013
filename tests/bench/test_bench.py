"""Every benchmark runs at the smallest size, so that `make bench` cannot break unnoticed."""

from __future__ import annotations

import json

import pytest

from bench.run import BENCHES
from tests import cli

pytestmark = pytest.mark.process


@pytest.mark.timeout(1500)
def test_every_benchmark_runs_at_a_tiny_size_and_writes_its_results(tmp_path):
    code, out = cli.run("bench.run", "--tiny", "--results", str(tmp_path), *BENCHES, timeout=1400)
    assert code == 0, out
    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in BENCHES}
    for name, record in results.items():
        assert record["benchmark"] == name and record["machine"]["cores_available"] >= 1
        assert "--tiny" in record["command"] and record["elapsed_s"] > 0
    assert all(r["measured_mbps"] > 0 for r in results["shaper"]["rates"])
    assert all(v > 0 for v in results["shaper"]["transport_cpu_s_per_mb"].values())
    assert results["memory"]["run_status"] == "ok" and results["memory"]["nodes"] == 4
    assert results["cifar_shard"]["shard_images"] > 0
    for name in ("efficiency", "efficiency_cifar"):
        efficiency = results[name]
        assert efficiency["status"] == "ok" and efficiency["compute_limit_tdf"] > 0
        assert efficiency["efficiency"] == pytest.approx(
            efficiency["compute_limit_tdf"] / efficiency["tdf"]
        )
    divshare = results["fidelity"]["algorithms"]["divshare"]["runs"]
    assert divshare["2a"]["tdf"] == pytest.approx(2 * divshare["a"]["tdf"])
    assert divshare["step"]["tdf"] == pytest.approx(2 * divshare["a"]["tdf"])
    assert divshare["virtual"]["clock"] == "virtual" and divshare["virtual"]["tdf"] is None
    assert set(results["fidelity"]["algorithms"]) == {"divshare", "swift", "adpsgd_atomic"}
    assert results["scale"]["run_status"] == "ok" and results["scale"]["nodes"] == 6
    assert results["scale"]["connections_opened"] > 0 and results["scale"]["clock"] == "virtual"
    virtual = results["virtual"]
    for case, row in virtual["table"].items():
        assert row["virtual"]["status"] == row["wall"]["status"] == "ok", case
        assert row["virtual"]["clock"] == "virtual" and row["wall"]["clock"] == "wall"
        assert row["virtual"]["efficiency"] > 0 and row["wall"]["tdf"] >= 1.0
    assert virtual["targets_met"]["repeats_bit_for_bit"]  # two runs, the same models and records
    assert virtual["default_run"]["status"] == "ok"
    assert set(virtual["advances_per_round_60"]) == {"divshare", "adpsgd_atomic"}
    assert set(results["nolag"]["runs"]) == {"default/divshare", "default/swift", "default/adpsgd"}
    reliability = results["reliability"]
    assert reliability["meets_target"] and reliability["kills"]["runs_ok"] == "1 of 1"
    assert reliability["fuzz"]["malformed_counted"] == reliability["fuzz"]["frames"] == 2000
    assert all(count > 0 for count in reliability["fuzz"]["by_kind"].values())
    assert reliability["ctrl_c"]["trials_ok"] == "2 of 2"
    cluster = results["cluster"]["runs"]
    assert all(run["status"] == "ok" for run in cluster.values()), cluster
    assert cluster["ray_at_a"]["tdf"] == pytest.approx(cluster["local"]["tdf"])
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert all(f"## {name}" in summary for name in BENCHES)
