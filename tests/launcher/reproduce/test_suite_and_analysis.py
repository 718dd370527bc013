"""A suite's checks and plan, and the analysis of its runs from summaries made up here."""

from pathlib import Path

import pytest

from launcher.reproduce import analysis
from launcher.reproduce.suite import (
    ClaimSpec,
    PartSpec,
    Suite,
    SuiteError,
    check_suite,
    load_suite,
    plan_runs,
)


def _suite(**claim) -> Suite:
    part = PartSpec(
        name="p",
        title="P",
        scenarios={"slow": ["network=stragglers"], "flat": ["network=uniform"]},
        algorithms=["divshare", "adpsgd"],
        overrides=["duration=10"],
    )
    spec = dict(
        id="c", text="t", kind="speedup", paper=3.9, part="p", scenarios=["slow"], versus=["adpsgd"]
    )
    return Suite(name="s", seeds=[1, 2, 3], parts=[part], claims=[ClaimSpec(**{**spec, **claim})])


def test_the_shipped_suite_loads_and_plans_the_issue_s_runs():
    suite = load_suite("paper")
    runs = plan_runs(suite)
    embedded = [r for r in runs if r.part == "embedded"]
    assert len(embedded) == 5 * 3 * 3
    assert {r.algorithm for r in runs if r.part == "baselines"} >= {
        "el",
        "dpsgd",
        "relaysgd",
        "lasgd",
    }
    # the baselines part shares the embedded part's runs of the same scenario
    shared = {r.run_dir(Path("o")) for r in embedded} & {
        r.run_dir(Path("o")) for r in runs if r.part == "baselines"
    }
    assert len(shared) == 3 * 3
    first = runs[0]
    assert first.overrides[-2:] == ("algorithm=divshare", "seed=1")


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ({"kind": "faster"}, "claims.c.kind: 'faster'; valid: speedup"),
        ({"part": "q"}, "claims.c.part: no part 'q'"),
        ({"scenarios": ["none"]}, "claims.c.scenarios: 'none' is not in part p"),
        ({"versus": ["swift"]}, "'swift' is not run in part p"),
    ],
)
def test_a_bad_claim_names_its_key(claim, message):
    with pytest.raises(SuiteError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_suite(_suite(**claim), "s.yaml")


def test_a_missing_key_and_an_unknown_suite_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\nseeds: [1]\nparts:\n  - name: p\n    title: P\n    algorithms: [el]\n"
    )
    with pytest.raises(SuiteError, match="scenarios"):
        load_suite(str(path))
    with pytest.raises(SuiteError, match="shipped suites: paper"):
        load_suite("nope")


def test_two_parts_may_not_make_one_scenario_name_differently():
    suite = _suite()
    other = PartSpec(name="q", title="Q", scenarios={"slow": ["network=geo"]}, algorithms=["el"])
    suite.parts.append(other)
    with pytest.raises(SuiteError, match="parts.q.scenarios.slow"):
        check_suite(suite)


def _summary(times: dict, final: float, status: str = "ok") -> dict:
    """A run that reaches each target at the given time and ends at `final` accuracy."""
    curve = [{"t": 0.0, "mean": 0.1}]
    for target, t in sorted(times.items(), key=lambda kv: kv[1]):
        curve.append({"t": t, "mean": float(target)})
    curve.append({"t": 10.0, "mean": final})
    return {
        "status": status,
        "metric": "accuracy",
        "time_to_accuracy": {"0.3": None, "0.4": None},
        "lag": {"lagged": False},
        "curve": curve,
    }


def _results(suite, table):
    results = []
    for run in plan_runs(suite):
        times, final, status = table[(run.scenario, run.algorithm, run.seed)]
        summary = _summary(times, final, status)
        results.append(analysis.RunResult(run, summary, analysis.flag_of(summary)))
    return results


def test_claims_are_computed_from_the_runs_and_a_degraded_run_is_left_out():
    suite = _suite()
    table = {}
    for seed, (div, ad) in enumerate([(2.0, 6.0), (2.5, 7.5), (2.0, 4.0)], 1):
        for scenario in ("slow", "flat"):
            table[(scenario, "divshare", seed)] = ({"0.3": div / 2, "0.4": div}, 0.7, "ok")
            table[(scenario, "adpsgd", seed)] = ({"0.3": ad / 2, "0.4": ad}, 0.5, "ok")
    table[("slow", "adpsgd", 3)] = ({"0.3": 1.0, "0.4": 2.0}, 0.9, "degraded")
    result = analysis.analyse(suite, _results(suite, table), {})
    (claim,) = result["claims"]
    (row,) = claim["rows"]
    assert row["seeds"] == [1, 2]  # seed 3 of AD-PSGD degraded: out of the pairs
    assert row["target"] == 0.4
    assert row["value"] == pytest.approx((6.0 + 7.5) / (2.0 + 2.5))
    assert claim["up_to"]["value"] == row["value"]
    assert result["flagged"] == [{"run": "p/slow/adpsgd/seed3", "flag": "degraded"}]
    slow = result["parts"][0]["scenarios"][0]
    divshare, adpsgd = slow["algorithms"]
    assert divshare["final"]["value"] == pytest.approx(0.7)
    assert adpsgd["seeds"] == [1, 2]
    assert divshare["time_to"]["0.4"]["value"] == pytest.approx((2.0 + 2.5 + 2.0) / 3)


def test_an_accuracy_gain_is_in_points_and_relative():
    suite = _suite(kind="accuracy_gain", scenarios=["slow", "flat"])
    table = {}
    for seed in (1, 2, 3):
        for scenario in ("slow", "flat"):
            table[(scenario, "divshare", seed)] = ({"0.3": 1.0}, 0.6, "ok")
            table[(scenario, "adpsgd", seed)] = ({"0.3": 2.0}, 0.5, "ok")
    rows = analysis.analyse(suite, _results(suite, table), {})["claims"][0]["rows"]
    assert [r["scenario"] for r in rows] == ["slow", "flat"]
    assert rows[0]["value"] == pytest.approx(10.0) and rows[0]["verdict"] == "holds"
    assert rows[0]["relative"]["value"] == pytest.approx(20.0)


def test_a_target_one_seed_missed_gives_no_mean_and_a_lower_common_target():
    suite = _suite(kind="speedup")
    table = {}
    for seed in (1, 2, 3):
        for scenario in ("slow", "flat"):
            table[(scenario, "divshare", seed)] = ({"0.3": 1.0, "0.4": 2.0}, 0.7, "ok")
            table[(scenario, "adpsgd", seed)] = ({"0.3": 3.0, "0.4": 6.0}, 0.5, "ok")
    table[("slow", "adpsgd", 2)] = ({"0.3": 3.0}, 0.35, "ok")  # never reached 0.4
    result = analysis.analyse(suite, _results(suite, table), {})
    (row,) = result["claims"][0]["rows"]
    assert row["target"] == 0.3 and row["value"] == pytest.approx(3.0)
    adpsgd = result["parts"][0]["scenarios"][0]["algorithms"][1]
    assert adpsgd["time_to"]["0.4"] == {
        "value": None,
        "low": None,
        "high": None,
        "n": 0,
        "reached": 2,
        "of": 3,
    }


def test_verdicts():
    est = analysis.Estimate
    assert analysis.verdict(est(2.0, 1.5, 2.5, 3), 1.0) == "holds"
    assert analysis.verdict(est(2.0, 0.9, 2.5, 3), 1.0).startswith("same direction, interval")
    assert analysis.verdict(est(0.8, 0.7, 0.9, 3), 1.0) == "does not hold"
    assert analysis.verdict(est(2.0, None, None, 1), 1.0).startswith("same direction (one seed")
    assert analysis.verdict(est(None, None, None, 0), 1.0) == "not measured"


def test_a_skipped_part_s_claim_says_why():
    suite = _suite()
    result = analysis.analyse(suite, [], {"p": "MovieLens is not at data/"})
    assert result["claims"][0]["verdict"] == (
        "not measured: the p part was skipped, its data set is not here (see that part)"
    )
    assert result["parts"][0]["skipped"] == "MovieLens is not at data/"


def test_a_movielens_claim_is_judged_on_rmse_lower_is_better():
    suite = _suite(kind="loss_reduction", scenarios=["slow"])
    results = []
    for run in plan_runs(suite):
        final = {"divshare": 1.0, "adpsgd": 1.25}[run.algorithm] + 0.01 * run.seed
        curve = [{"t": 0.0, "loss": 3.7}, {"t": 5.0, "loss": 1.5}, {"t": 10.0, "loss": final}]
        summary = {
            "status": "ok",
            "metric": "RMSE",
            "time_to_rmse": {"1.5": 5.0},
            "lag": {"lagged": False},
            "curve": curve,
        }
        results.append(analysis.RunResult(run, summary, analysis.flag_of(summary)))
    result = analysis.analyse(suite, results, {})
    (row,) = result["claims"][0]["rows"]
    # (1.27 - 1.02) / 1.27 on average: the RMSE of DivShare is lower by ~19.7%
    assert row["value"] == pytest.approx(100 * (1 - 1.02 / 1.27))
    assert row["verdict"] == "holds"
    part = result["parts"][0]
    assert part["metric"] == "RMSE" and part["higher_is_better"] is False
    divshare = part["scenarios"][0]["algorithms"][0]
    assert divshare["final"]["value"] == pytest.approx(1.02)
    assert divshare["time_to"]["1.5"]["value"] == pytest.approx(5.0)


def test_the_sharing_suite_makes_each_method_by_its_overrides_and_every_run_validates():
    from launcher.config.schema import validate
    from tests.launcher.config.test_schema import composed

    suite = load_suite("sharing")
    runs = {r.algorithm: r for r in plan_runs(suite)}
    assert set(runs) == {
        "divshare",
        "dpsgd",
        "dpsgd_topk10",
        "choco_topk10",
        "choco_q4",
        "el_random10",
    }
    assert runs["divshare"].overrides[-2:] == ("algorithm=divshare", "seed=1")
    q4 = runs["choco_q4"].overrides
    assert "algorithm=choco" in q4 and "sharing=quantize" in q4 and "algorithm=choco_q4" not in q4
    made = {name: validate(composed(*run.overrides)) for name, run in runs.items()}
    assert made["choco_q4"].algorithm.gamma == 0.5 and made["choco_q4"].sharing.bits == 4
    assert made["el_random10"].sharing.name == "random" and made["dpsgd"].sharing.name == "full"
    assert {m.num_nodes for m in made.values()} == {60}


def test_a_method_that_is_not_run_is_named():
    suite = _suite()
    suite.parts[0].methods = {"dpsgd_topk": ["algorithm=dpsgd", "sharing=topk"]}
    with pytest.raises(SuiteError, match=r"parts\.p\.methods: \['dpsgd_topk'\]"):
        check_suite(suite)


def test_traffic_to_targets_and_the_metric_at_the_byte_budget():
    """divshare sends 2 MB per emulated second, adpsgd 1: the budget is adpsgd's total, 10 MB,
    which divshare had sent at t=5."""
    suite = _suite()
    suite.seeds = [1]
    suite.parts[0].scenarios = {"slow": []}
    rate = {"divshare": 2.0, "adpsgd": 1.0}
    results = []
    for run in plan_runs(suite):
        curve = [
            {"t": t, "mean": 0.1 + 0.05 * t, "mb_sent": rate[run.algorithm] * t}
            for t in (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)
        ]
        summary = {
            "status": "ok",
            "metric": "accuracy",
            "time_to_accuracy": {"0.3": 4.0, "0.4": 6.0},
            "mb_to_accuracy": {"0.3": 4.0 * rate[run.algorithm], "0.4": 6.0 * rate[run.algorithm]},
            "lag": {"lagged": False},
            "curve": curve,
        }
        results.append(analysis.RunResult(run, summary, None))
    (scenario,) = analysis.analyse(suite, results, {})["parts"][0]["scenarios"]
    assert scenario["budget_mb"] == 10.0
    divshare, adpsgd = scenario["algorithms"]
    assert divshare["mb_total"]["value"] == 20.0 and adpsgd["mb_total"]["value"] == 10.0
    assert divshare["mb_to"]["0.3"]["value"] == 8.0 and adpsgd["mb_to"]["0.4"]["value"] == 6.0
    assert divshare["at_budget"]["value"] == pytest.approx(0.1 + 0.05 * 5)
    assert adpsgd["at_budget"]["value"] == pytest.approx(0.1 + 0.05 * 10)
    assert divshare["curve"]["mb"] == [0.0, 4.0, 8.0, 12.0, 16.0, 20.0]
