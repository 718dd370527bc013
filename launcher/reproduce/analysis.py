"""A reproduction's figures, from its runs' summaries alone: per scenario and algorithm the mean
curve and its band, time to each target and the final metric with 95% intervals, the reference's
speed-ups, and each claim of the paper against what was measured. Plain data, no drawing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from launcher.report.metric import Metric, metric_of_summary, time_to_targets
from launcher.report.runs import read_json
from launcher.reproduce.stats import NONE, Estimate, band, mean_interval, paired_bootstrap
from launcher.reproduce.suite import ClaimSpec, PlannedRun, Suite
from launcher.reproduce.traffic import at_budget, has_traffic, traffic_stats

NO_EFFECT = {"speedup": 1.0, "accuracy_gain": 0.0, "loss_reduction": 0.0}


@dataclass
class RunResult:
    run: PlannedRun
    summary: dict
    flag: str | None  # why the run is left out of the intervals, or None

    @property
    def curve(self) -> list[dict]:
        return self.summary.get("curve") or []


def flag_of(summary: dict) -> str | None:
    """Why a run's figures cannot be trusted: it did not finish, lost nodes, or lagged."""
    if not summary:
        return "not run"
    status = summary.get("status")
    if status != "ok":
        return "interrupted" if summary.get("interrupted") else str(status)
    if summary.get("lag", {}).get("lagged"):
        return "lagged"
    if summary.get("evaluation_complete") is False:
        return "evaluation incomplete"
    if not summary.get("curve"):
        return "no curve"
    return None


def load_result(run: PlannedRun, run_dir: Path) -> RunResult:
    summary = read_json(run_dir / "summary.json")
    return RunResult(run, summary, flag_of(summary))


@dataclass
class Cell:
    """One algorithm on one scenario: its runs (one per seed) and what they give."""

    part: str
    scenario: str
    algorithm: str
    results: list[RunResult] = field(default_factory=list)

    @property
    def valid(self) -> list[RunResult]:
        return [r for r in self.results if r.flag is None]

    def by_seed(self) -> dict[int, RunResult]:
        return {r.run.seed: r for r in self.valid}


def _cell(cells: dict, part: str, scenario: str, algorithm: str) -> Cell:
    return cells.get((part, scenario, algorithm)) or Cell(part, scenario, algorithm)


def final_value(result: RunResult, metric: Metric) -> float:
    return float(result.curve[-1][metric.mean])


def times_to(result: RunResult, targets, metric: Metric) -> dict[str, float | None]:
    return time_to_targets(result.curve, tuple(targets), metric)


def cell_stats(cell: Cell, targets, metric: Metric) -> dict:
    valid = cell.valid
    tta = {}
    for target in targets:
        key = f"{target:g}"
        times = [times_to(r, targets, metric)[key] for r in valid]
        reached = [t for t in times if t is not None]
        est = mean_interval(reached) if valid and len(reached) == len(valid) else NONE
        tta[key] = {**est.as_dict(), "reached": len(reached), "of": len(valid)}
    return {
        "algorithm": cell.algorithm,
        "seeds": [r.run.seed for r in valid],
        **traffic_stats(valid, tta, metric),
        "flagged": [
            {"seed": r.run.seed, "flag": r.flag, "run": r.run.key} for r in cell.results if r.flag
        ],
        "final": mean_interval([final_value(r, metric) for r in valid]).as_dict(),
        "time_to": tta,
        "curve": cell_curve(valid, metric),
    }


def cell_curve(valid: list[RunResult], metric: Metric) -> dict:
    """The mean over seeds of the mean-over-nodes curve, with its 95% t band, on the first
    run's evaluation instants up to the shortest run's end; with the MB sent by then."""
    if not valid:
        return {"t": [], "mean": [], "low": [], "high": [], "mb": []}
    end = min(r.curve[-1]["t"] for r in valid)
    grid = np.array([p["t"] for p in valid[0].curve if p["t"] <= end + 1e-9])

    def at(r: RunResult, key: str) -> np.ndarray:
        return np.interp(grid, [p["t"] for p in r.curve], [p[key] for p in r.curve])

    mean, low, high = band([at(r, metric.mean) for r in valid])
    mb = np.mean([at(r, "mb_sent") for r in valid], axis=0).tolist() if has_traffic(valid) else []
    return {
        "t": grid.tolist(),
        "mean": mean.tolist(),
        "low": low.tolist(),
        "high": high.tolist(),
        "mb": mb,
    }


def common_target(ref: Cell, other: Cell, targets, metric: Metric) -> float | None:
    """The last target (in the order runs reach them) every valid run of both reached."""
    best = None
    for target in metric.in_order_reached(targets):
        runs = ref.valid + other.valid
        if runs and all(times_to(r, targets, metric)[f"{target:g}"] is not None for r in runs):
            best = target
    return best


def compare_cells(ref: Cell, other: Cell, kind: str, targets, metric: Metric) -> dict:
    """The reference against another algorithm on one scenario, paired by seed: speed-up at
    the last target both reached, final metric gain in points, or relative loss reduction."""
    a, b = ref.by_seed(), other.by_seed()
    seeds = sorted(set(a) & set(b))
    row = {"scenario": ref.scenario, "versus": other.algorithm, "seeds": seeds, "target": None}
    if kind == "speedup":
        target = common_target(ref, other, targets, metric)
        row["target"] = target
        if target is None or not seeds:
            return {**row, **NONE.as_dict(), "why": "no target reached by every run of both"}
        key = f"{target:g}"
        mine = [times_to(a[s], targets, metric)[key] for s in seeds]
        theirs = [times_to(b[s], targets, metric)[key] for s in seeds]
        est = paired_bootstrap(theirs, mine, "ratio")
    elif kind == "accuracy_gain":  # in points; the paper's "19.4%" may be relative: both
        mine = [100 * final_value(a[s], metric) for s in seeds]
        theirs = [100 * final_value(b[s], metric) for s in seeds]
        est = paired_bootstrap(mine, theirs, "difference") if seeds else NONE
        relative = paired_bootstrap(mine, theirs, "ratio") if seeds else NONE
        row["relative"] = _scaled(_shifted(relative, -1.0), 100).as_dict()
    else:  # loss_reduction, as a percentage of the other's
        mine = [final_value(a[s], metric) for s in seeds]
        theirs = [final_value(b[s], metric) for s in seeds]
        est = paired_bootstrap(mine, theirs, "reduction") if seeds else NONE
        est = _scaled(est, 100)
    return {**row, **est.as_dict(), "verdict": verdict(est, NO_EFFECT[kind])}


def _scaled(est: Estimate, factor: float) -> Estimate:
    def s(x):
        return None if x is None else x * factor

    return Estimate(s(est.value), s(est.low), s(est.high), est.n)


def _shifted(est: Estimate, by: float) -> Estimate:
    def s(x):
        return None if x is None else x + by

    return Estimate(s(est.value), s(est.low), s(est.high), est.n)


def verdict(est: Estimate, no_effect: float) -> str:
    if est.value is None:
        return "not measured"
    if est.value <= no_effect:
        return "does not hold"
    if est.low is None:
        return "same direction (one seed: no interval)"
    if est.low > no_effect:
        return "holds"
    return "same direction, interval includes no effect"


def check_claim(claim: ClaimSpec, cells: dict, targets, metric: Metric, reference: str) -> dict:
    rows = []
    for scenario in claim.scenarios:
        ref = _cell(cells, claim.part, scenario, reference)
        for versus in claim.versus:
            other = _cell(cells, claim.part, scenario, versus)
            rows.append(compare_cells(ref, other, claim.kind, targets, metric))
    measured = [r for r in rows if r["value"] is not None]
    best = max(measured, key=lambda r: r["value"], default=None)
    holds = sum(r["verdict"] == "holds" for r in rows)
    if not measured:
        overall = "not measured"
    elif holds == len(rows):
        overall = "holds"
    elif holds:
        overall = f"holds in {holds} of {len(rows)} comparisons"
    else:
        directions = sum(r["value"] > NO_EFFECT[claim.kind] for r in measured)
        overall = (
            f"same direction in {directions} of {len(rows)}, no interval excludes no effect"
            if directions
            else "does not hold"
        )
    return {**_claim_head(claim), "up_to": best, "verdict": overall, "rows": rows}


def analyse(suite: Suite, results: list[RunResult], skipped: dict[str, str]) -> dict:
    """Everything the report shows, as plain data."""
    cells: dict[tuple, Cell] = {}
    for r in results:
        key = (r.run.part, r.run.scenario, r.run.algorithm)
        cells.setdefault(key, Cell(*key)).results.append(r)
    parts = []
    metric_by_part: dict[str, tuple] = {}
    for spec in suite.parts:
        mine = [c for c in cells.values() if c.part == spec.name]
        summaries = [r.summary for c in mine for r in c.valid]
        metric = metric_of_summary(summaries[0]) if summaries else None
        targets = _targets(summaries, metric) if metric else ()
        metric_by_part[spec.name] = (metric, targets)
        scenarios = []
        for scenario in spec.scenarios:
            row = {"scenario": scenario, "algorithms": []}
            row_cells = [_cell(cells, spec.name, scenario, a) for a in spec.algorithms]
            for cell in row_cells:
                row["algorithms"].append(cell_stats(cell, targets, metric) if metric else {})
            row["budget_mb"] = at_budget(row_cells, row["algorithms"], metric) if metric else None
            ref = _cell(cells, spec.name, scenario, suite.reference)
            row["speedups"] = [
                compare_cells(ref, _cell(cells, spec.name, scenario, a), "speedup", targets, metric)
                for a in spec.algorithms
                if metric and suite.reference in spec.algorithms and a != suite.reference
            ]
            scenarios.append(row)
        parts.append(
            {
                "name": spec.name,
                "title": spec.title,
                "scaled": spec.scaled,
                "skipped": skipped.get(spec.name),
                "metric": metric.name if metric else None,
                "higher_is_better": metric.higher_is_better if metric else None,
                "targets": [f"{t:g}" for t in targets],
                "scenarios": scenarios,
            }
        )
    claims = []
    for claim in suite.claims:
        metric, targets = metric_by_part.get(claim.part, (None, ()))
        if metric is None:
            why = (
                f"the {claim.part} part was skipped, its data set is not here (see that part)"
                if claim.part in skipped
                else "no finished run"
            )
            claims.append(
                {**_claim_head(claim), "verdict": f"not measured: {why}", "up_to": None, "rows": []}
            )
            continue
        claims.append(check_claim(claim, cells, targets, metric, suite.reference))
    flagged = [{"run": r.run.key, "flag": r.flag} for r in results if r.flag is not None]
    return {
        "suite": suite.name,
        "title": suite.title,
        "reference": suite.reference,
        "parts": parts,
        "claims": claims,
        "flagged": flagged,
    }


def _claim_head(claim: ClaimSpec) -> dict:
    return {
        "id": claim.id,
        "text": claim.text,
        "kind": claim.kind,
        "paper": claim.paper,
        "part": claim.part,
    }


def _targets(summaries: list[dict], metric: Metric) -> tuple[float, ...]:
    found = {float(k) for s in summaries for k in s.get(f"time_to_{metric.key}", {})}
    return metric.in_order_reached(found)
