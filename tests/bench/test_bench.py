"""Every benchmark runs at the smallest size, so that `make bench` cannot break unnoticed."""

from __future__ import annotations

import json

import pytest

from bench.run import BENCHES
from tests import cli

pytestmark = pytest.mark.process


@pytest.mark.timeout(1200)
def test_every_benchmark_runs_at_a_tiny_size_and_writes_its_results(tmp_path):
    code, out = cli.run("bench.run", "--tiny", "--results", str(tmp_path), timeout=1100)
    assert code == 0, out
    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in BENCHES}
    for name, record in results.items():
        assert record["benchmark"] == name and record["machine"]["cores_available"] >= 1
        assert "--tiny" in record["command"]
    assert all(r["measured_mbps"] > 0 for r in results["shaper"]["rates"])
    assert results["memory"]["run_status"] == "ok" and results["memory"]["nodes"] == 4
    assert results["cifar_shard"]["shard_images"] > 0
    efficiency = results["efficiency"]
    assert efficiency["run_status"] == "ok" and efficiency["local_steps"] > 0
    assert efficiency["bare_steps_per_s_one_core"] > 0 and efficiency["ratio"] > 0
    first, second = results["dilation"]["runs"]
    assert second["tdf"] == pytest.approx(2 * first["tdf"])
    summary = (tmp_path / "SUMMARY.md").read_text()
    assert all(f"## {name}" in summary for name in BENCHES)
