"""A tiny reproduction through the real CLI: 4 nodes, 2 scenarios, 2 algorithms, 2 seeds. Its
report's claims match the runs' summaries; a second invocation makes nothing; a deleted run is
made again."""

import json
import shutil

import numpy as np
import pytest

from tests.cli import run

pytestmark = pytest.mark.process

SUITE = """
name: tiny
seeds: [1, 2]
overrides: [num_nodes=4, algorithm.degree=2, duration=2, eval.interval=0.5,
            "eval.targets=[0.13,0.16]", data_root={data}]
parts:
  - name: embedded
    title: MNIST-1D, two scenarios
    scenarios:
      uniform: [network=uniform]
      stragglers: [network.straggler_fraction=0.25]
    algorithms: [divshare, adpsgd]
  - name: movielens
    title: MovieLens, absent here
    dataset: movielens
    scenarios:
      ml: [dataset=movielens, model=mf, "eval.targets=[3.0]", dataset.download=false]
    algorithms: [divshare, adpsgd]
claims:
  - {{id: speed, text: faster, kind: speedup, paper: 3.9, part: embedded,
     scenarios: [uniform, stragglers], versus: [adpsgd]}}
  - {{id: accuracy, text: more accurate, kind: accuracy_gain, paper: 19.4, part: embedded,
     scenarios: [uniform, stragglers], versus: [adpsgd]}}
  - {{id: loss, text: lower loss, kind: loss_reduction, paper: 9.5, part: movielens,
     scenarios: [ml], versus: [adpsgd]}}
"""


@pytest.fixture(scope="module")
def reproduction(tmp_path_factory, shared_data_root):
    folder = tmp_path_factory.mktemp("reproduce")
    suite = folder / "tiny.yaml"
    suite.write_text(SUITE.format(data=shared_data_root))
    out = folder / "out"
    args = ("--suite", str(suite), "--out", str(out))
    code, dry = run("launcher.reproduce", *args, "--dry-run", timeout=300)
    assert code == 0, dry
    assert not (out / "runs").exists(), "a dry run made runs"
    code, first = run("launcher.reproduce", *args, timeout=600)
    assert code == 0, first
    return {"args": args, "out": out, "dry": dry, "first": first}


def summaries(out, scenario, algorithm):
    runs = sorted((out / "runs" / scenario).glob(f"{algorithm}-s*"))
    return [json.loads((r / "summary.json").read_text()) for r in runs]


def test_the_dry_run_prints_the_runs_and_their_expected_time(reproduction):
    dry = reproduction["dry"]
    assert "part embedded: 2 scenarios x 2 algorithms x 2 seeds = 8 runs" in dry
    assert "8 to make" in dry
    assert "expected wall time here: " in dry and "not priced" not in dry  # the probe priced them
    assert "part movielens: skipped, MovieLens is not at" in dry


def test_the_claims_table_matches_the_runs_summaries(reproduction):
    out = reproduction["out"]
    report = json.loads((out / "report.json").read_text())
    claims = {c["id"]: c for c in report["claims"]}
    for row in claims["accuracy"]["rows"]:
        mine = [s["final_mean_accuracy"] for s in summaries(out, row["scenario"], "divshare")]
        theirs = [s["final_mean_accuracy"] for s in summaries(out, row["scenario"], "adpsgd")]
        assert row["seeds"] == [1, 2]
        assert row["value"] == pytest.approx(100 * (np.mean(mine) - np.mean(theirs)))
    for row in claims["speed"]["rows"]:
        if row["target"] is None:  # no target reached by every run of both
            continue
        key = f"{row['target']:g}"
        mine = [s["time_to_accuracy"][key] for s in summaries(out, row["scenario"], "divshare")]
        theirs = [s["time_to_accuracy"][key] for s in summaries(out, row["scenario"], "adpsgd")]
        assert row["value"] == pytest.approx(np.mean(theirs) / np.mean(mine))
    best = max((r for r in claims["accuracy"]["rows"]), key=lambda r: r["value"])
    assert claims["accuracy"]["up_to"]["value"] == best["value"]
    assert claims["loss"]["verdict"].startswith("not measured: the movielens part was skipped")
    assert "Skipped: MovieLens is not at" in (out / "REPORT.md").read_text()
    text = (out / "REPORT.md").read_text()
    assert f"| more accurate | up to 19.4 points | {best['value']:.2f} points" in text
    for scenario in ("uniform", "stragglers"):
        assert (out / "figures" / f"embedded-{scenario}.png").stat().st_size > 0
    assert "8 runs: 8 made by this invocation, 0 reused" in text


def test_a_second_invocation_makes_only_the_run_deleted_since(reproduction):
    out, args = reproduction["out"], reproduction["args"]
    kept = out / "runs" / "uniform" / "divshare-s1" / "summary.json"
    before = kept.stat().st_mtime_ns
    shutil.rmtree(out / "runs" / "stragglers" / "adpsgd-s2")
    code, resumed = run("launcher.reproduce", *args, timeout=300)
    assert code == 0, resumed
    assert "7 made already or by another part, 1 to make" in resumed
    assert "run 1/1 embedded/stragglers/adpsgd/seed2: ok" in resumed
    assert (out / "runs" / "stragglers" / "adpsgd-s2" / "summary.json").is_file()
    assert kept.stat().st_mtime_ns == before  # the seven others were not made again
    assert "8 runs: 1 made by this invocation, 7 reused" in (out / "REPORT.md").read_text()
