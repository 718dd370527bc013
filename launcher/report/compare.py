"""Compares finished runs on their task's metric: time to each target, speed-ups, final and
worst-node values, traffic; writes the Markdown and CSV tables, the JSON and the figures."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from launcher.report.curves import bytes_sent_at, load_node_records
from launcher.report.metric import Metric, time_to_targets
from launcher.report.plots import plot_bytes, plot_metric
from launcher.report.runs import (
    Group,
    Run,
    assign_labels,
    check_comparable,
    find_run_dirs,
    load_run,
)
from launcher.report.tables import markdown_table, render_csv, render_markdown
from node.files import write_json_atomic, write_text_atomic

MB = 1e6


def mean_std(values) -> dict:
    """Mean and population standard deviation (ddof=0) of the values that exist."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs)), "n": len(xs)}


def group_curve(runs: list[Run], node_records: dict[Path, list[list[dict]]], metric) -> dict:
    """Mean over seeds of the mean-over-nodes curve, min of mins, max of maxes, the worst of the
    worst nodes, and the bytes sent by all nodes at each instant, on the first run's evaluation
    grid up to the shortest."""
    curves = [r.summary.get("curve") or [] for r in runs]
    curves = [c for c in curves if c]
    if not curves:
        return {"t": [], "mean": [], "min": [], "max": [], "worst": [], "mb": []}
    end = min(c[-1]["t"] for c in curves)
    grid = np.array([p["t"] for p in curves[0] if p["t"] <= end + 1e-9])

    def at(curve, key):
        return np.interp(grid, [p["t"] for p in curve], [p[key] for p in curve])

    worst = np.min if metric.higher_is_better else np.max
    ran = [r for r in runs if r.summary.get("curve")]
    sent = [bytes_sent_at(node_records.get(r.dir, []), grid) for r in ran]
    return {
        "t": grid.tolist(),
        "mean": np.mean([at(c, metric.mean) for c in curves], axis=0).tolist(),
        "min": np.min([at(c, metric.low) for c in curves], axis=0).tolist(),
        "max": np.max([at(c, metric.high) for c in curves], axis=0).tolist(),
        "worst": worst([at(c, metric.worst) for c in curves], axis=0).tolist(),
        "mb": (np.mean(sent, axis=0) / MB).tolist(),
    }


def _final(run: Run, key: str):
    curve = run.summary.get("curve")
    return curve[-1][key] if curve else None


def group_stats(
    group: Group, targets: tuple[float, ...], metric: Metric, node_records: dict | None = None
) -> dict:
    runs, node_records = group.runs, node_records or {}
    tta, mb_to = {}, {}
    for target in targets:
        key = f"{target:g}"
        times = [
            time_to_targets(r.summary.get("curve") or [], (target,), metric)[key] for r in runs
        ]
        reached = sum(t is not None for t in times)
        stats = mean_std(times) if reached == len(runs) else {"mean": None, "std": None}
        tta[key] = {"mean": stats["mean"], "std": stats["std"], "reached": reached}
        # the bytes every node had sent by then, from the runs' per-round records
        sent = [
            None if t is None else bytes_sent_at(node_records.get(r.dir, []), [t])[0] / MB
            for r, t in zip(runs, times, strict=True)
        ]
        mb_to[key] = _ms(sent) if reached == len(runs) else {"mean": None, "std": None}
    totals = [r.summary.get("totals", {}) for r in runs]
    return {
        "label": group.label,
        "runs": len(runs),
        "seeds": [r.seed for r in runs],
        "dirs": [str(r.dir) for r in runs],
        f"time_to_{metric.key}": tta,
        f"mb_to_{metric.key}": mb_to,
        f"final_mean_{metric.key}": _ms(_final(r, metric.mean) for r in runs),
        f"final_worst_{metric.key}": _ms(_final(r, metric.worst) for r in runs),
        "final_mean_loss": _ms(r.summary.get("final_mean_loss") for r in runs),
        "bytes_sent_mb": _ms(_mb(t.get("bytes_sent")) for t in totals),
        # Lost to a flush: never sent, plus sent but cut in the receiver's downlink queue.
        "bytes_dropped_mb": _ms(
            _mb((t.get("bytes_dropped") or 0) + (t.get("bytes_flushed_downlink") or 0))
            for t in totals
        ),
        "tdf": _ms(r.summary.get("tdf") for r in runs),
        # Messages released after their emulated delivery time: the host fell behind its
        # transport (a burst of messages), which lag, measured on local steps, does not show.
        "late_deliveries_pct": _ms(
            100 * t.get("late_deliveries", 0) / t["messages_delivered"]
            if t.get("messages_delivered")
            else None
            for t in totals
        ),
        "lagged_runs": sum(bool(r.summary.get("lag", {}).get("lagged")) for r in runs),
        "lagged": any(r.summary.get("lag", {}).get("lagged") for r in runs),
    }


def _ms(values) -> dict:
    stats = mean_std(values)
    return {"mean": stats["mean"], "std": stats["std"]}


def _mb(nbytes):
    return None if nbytes is None else nbytes / MB


def add_speedups(stats: list[dict], targets: tuple[float, ...], metric: Metric) -> None:
    """speed-up = time to target of the first group / this group's (mean over seeds)."""
    ref = stats[0][f"time_to_{metric.key}"]
    for row in stats:
        row["speedup"] = {}
        for target in targets:
            key = f"{target:g}"
            first, this = ref[key]["mean"], row[f"time_to_{metric.key}"][key]["mean"]
            ok = first is not None and this is not None and this > 0
            row["speedup"][key] = first / this if ok else None


def compare(dirs: list[Path]) -> dict:
    """Everything the comparison reports, as plain data; raises CompareError if it cannot."""
    run_dirs, warnings = find_run_dirs(dirs)
    runs = [load_run(d) for d in run_dirs]
    groups = assign_labels(runs)
    warnings += check_comparable(runs)
    metric = runs[0].metric  # every run's, or check_comparable refused them
    targets = metric.in_order_reached({t for r in runs for t in r.targets})
    node_records = {r.dir: load_node_records(r.dir) for r in runs}
    stats = [group_stats(g, targets, metric, node_records) for g in groups]
    add_speedups(stats, targets, metric)
    for g, row in zip(groups, stats, strict=True):
        row["curve"] = group_curve(g.runs, node_records, metric)
    first = runs[0]
    return {
        "inputs": [str(d) for d in dirs],
        "num_nodes": first.summary.get("num_nodes"),
        "duration_s": first.summary.get("duration_emulated_s"),
        "network": sorted({str(r.config.get("network", {}).get("name", "?")) for r in runs}),
        "stragglers": sorted({len(r.summary.get("stragglers", [])) for r in runs}),
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        "targets": [f"{t:g}" for t in targets],
        "reference": stats[0]["label"],
        "std": "population standard deviation over seeds (ddof=0)",
        "lagged": any(row["lagged"] for row in stats),
        "warnings": warnings,
        "groups": stats,
    }


def default_out(dirs: list[Path]) -> Path:
    """The first input if it is a sweep dir, else ./comparison."""
    first = dirs[0]
    return first if not (first / "summary.json").exists() else Path.cwd() / "comparison"


def write_comparison(dirs: list[Path], out: Path | None = None) -> dict:
    """Compare the runs under `dirs` and write the five outputs into `out`; returns the data."""
    result = compare(dirs)
    out = out or default_out(dirs)
    out.mkdir(parents=True, exist_ok=True)
    plot_metric(result, out / f"comparison_{result['metric'].lower()}.png")
    plot_bytes(result, out / "comparison_bytes.png")
    write_text_atomic(out / "comparison.md", render_markdown(result))
    write_text_atomic(out / "comparison.csv", render_csv(result))
    write_json_atomic(out / "comparison.json", finite_json(result))
    result["out"] = str(out)
    return result


def finite_json(x):
    """JSON has no NaN: any that slipped in becomes null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite_json(v) for v in x]
    return x


def run_and_print(dirs: list[Path], out: Path | None = None) -> dict:
    result = write_comparison(dirs, out)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(markdown_table(result))
    print(f"comparison written to {result['out']}/comparison.{{md,csv,json}} and *.png", flush=True)
    return result
