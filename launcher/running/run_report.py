"""A finished run's summary, written by the launcher: summary.json, links.json, accuracy.png and,
when asked, the timeline, from the run's outcome and what its nodes and evaluators wrote."""

from __future__ import annotations

import dataclasses

from launcher.report.curves import (
    accuracy_curve,
    bytes_sent_at,
    consensus_curve,
    load_evals,
    load_node_records,
)
from launcher.report.metric import METRICS, time_to_targets
from launcher.report.plots import plot_run
from launcher.report.timeline import write_timeline
from launcher.running.clocks import clock_record
from node.data import TASKS
from node.files import write_json_atomic
from transport import Reachability
from transport.stats import LinkStats

# The test loss each data set reports (MovieLens: the paper's metric, lower is better).
LOSS_METRIC = {"movielens": "RMSE"}

# Every counter a node's links report, added over nodes (a maximum is not a sum).
SUMMED_TOTALS = tuple(k for k in LinkStats().totals() if k != "max_delivery_lateness")


def summarize(plan, outcome, evals: list[dict]) -> dict:
    run = plan.run
    reach = Reachability(run.scenario)
    absent = {n: reach.down_spans(n) for n in range(run.num_nodes) if reach.down_spans(n)}
    absent = {  # rounded: a share of the run ("70%") is not exact in binary
        n: [[round(a, 6), None if b == float("inf") else round(b, 6)] for a, b in s]
        for n, s in absent.items()
    }
    curve = accuracy_curve(evals, run.num_nodes, outcome.departed, absent)
    metric = METRICS[TASKS[run.dataset.name].metric]  # each data set names its own
    reached = time_to_targets(curve, run.targets, metric)
    mb_to = traffic_on_curve(curve, reached, load_node_records(plan.run_dir))
    reports = {}
    for n in range(run.num_nodes):
        report = outcome.done.get(n) or outcome.progress.get(n)
        reports[n] = report.stats if report is not None else {}
    totals = {key: sum(r.get(key, 0) for r in reports.values()) for key in SUMMED_TOTALS}
    behind = {n: r.get("behind_max", 0.0) for n, r in reports.items()}
    lagging = sorted(n for n, b in behind.items() if b > run.lag_tolerance)
    final = curve[-1] if curve else None
    pss = list(outcome.pss_mib.values())
    pss_run = list(outcome.pss_run_mib.values())
    return {
        "run_dir": str(plan.run_dir),
        "status": outcome.status,
        # emulated instant each node that died during the run was seen gone
        "departed": {str(n): round(t, 3) for n, t in sorted(outcome.departed.items())},
        # the scenario: its actions, when each node was away ([from, to), null: for good),
        # the emulated instants the launcher killed each node it crashed, and when a crashed
        # node came back in a new process
        "scenario": [_action(a) for a in run.scenario],
        "absent": {str(n): spans for n, spans in sorted(absent.items())},
        "crashed": {str(n): [round(t, 3) for t in ts] for n, ts in sorted(outcome.crashed.items())},
        "rejoined": {str(n): ts for n, ts in sorted(outcome.rejoined.items())},
        "interrupted": outcome.interrupted,
        "startup_error": outcome.startup_error,
        "failed_nodes": {str(n): e.strip().splitlines()[-1] for n, e in outcome.errors.items()},
        "algorithm": run.algorithm.name,
        "dataset": run.dataset.name,
        "model": run.model,
        "loss_metric": LOSS_METRIC.get(run.dataset.name, "cross-entropy"),
        "metric": metric.name,  # what the targets and comparisons judge
        "num_nodes": run.num_nodes,
        "stragglers": list(run.network.stragglers),
        "duration_emulated_s": run.duration,
        "clock_mode": run.clock,
        "tdf": outcome.tdf,
        "calibration": outcome.calibration,
        "time": time_record(run, outcome, reports),
        "wall_seconds": round(outcome.wall_seconds, 2),
        "ready_seconds": outcome.ready_seconds,
        "start_seconds": outcome.start_seconds,
        "training_wall_seconds": outcome.training_wall_seconds,
        "local_steps": sum(r.get("steps", 0) for r in reports.values()),
        # CPU seconds of every node process (all threads) per emulated second
        "node_cpu_per_emulated_s": sum(r.get("cpu_s", 0.0) for r in reports.values())
        / run.duration,
        "compute_cpu_per_step_s": sum(r.get("cpu_compute_s", 0.0) for r in reports.values())
        / max(1, sum(r.get("steps", 0) for r in reports.values())),
        "gate_wait_s_mean": sum(r.get("gate_wait_s", 0.0) for r in reports.values())
        / max(1, len(reports)),
        "final_mean_accuracy": final["mean"] if final else None,
        "final_worst_accuracy": final["min"] if final else None,
        "final_t": final["t"] if final else None,
        "initial_mean_accuracy": curve[0]["mean"] if curve else None,
        "final_mean_loss": final["loss"] if final else None,
        "final_worst_loss": final["loss_max"] if final else None,
        "final_global_loss": final.get("global_loss") if final else None,
        f"time_to_{metric.key}": reached,
        # MB sent by all nodes (headers, values and metadata) when each target was reached
        f"mb_to_{metric.key}": mb_to,
        "sharing": dataclasses.asdict(run.sharing),
        "evaluation_complete": outcome.evaluation_complete,
        "totals": totals,
        "lag": {
            "tolerance_s": run.lag_tolerance,
            "max_behind_s": max(behind.values(), default=0),
            "lagging_nodes": lagging,
            "lagged": bool(lagging),
        },
        "memory": {
            "ready_pss_mib_mean": sum(pss) / len(pss) if pss else None,
            "ready_pss_mib_total": sum(pss) if pss else None,
            "training_pss_mib_mean": sum(pss_run) / len(pss_run) if pss_run else None,
            "training_pss_mib_max": max(pss_run, default=None),  # sampled once, mid-run
            "training_pss_mib_total": sum(pss_run) if pss_run else None,
        },
        # each node's clock against the launcher's (NTP-style), flagged like lag
        "clock": clock_record(outcome.clocks, outcome.tdf, run.lag_tolerance),
        "backend": run.backend,
        "control": outcome.control,  # handshakes refused, frames from unknown processes
        "pids": outcome.pids,
        "curve": curve,
        "consensus": consensus_curve(plan.run_dir, run.num_nodes),
    }


def traffic_on_curve(curve: list[dict], reached: dict, node_records: list) -> dict:
    """Adds `mb_sent` (MB sent by all nodes so far) to every curve point; returns the MB sent
    when each target was reached (None where it was not)."""
    sent = bytes_sent_at(node_records, [p["t"] for p in curve]) / 1e6
    for point, mb in zip(curve, sent, strict=True):
        point["mb_sent"] = round(float(mb), 6)
    times = {k: t for k, t in reached.items() if t is not None}
    at = dict(zip(times, bytes_sent_at(node_records, list(times.values())) / 1e6, strict=True))
    return {k: None if k not in at else round(float(at[k]), 6) for k in reached}


def time_record(run, outcome, reports: dict) -> dict:
    """What emulated time cost in wall time: wall seconds per emulated second (training only,
    start-up and evaluation aside), the compute limit (the wall seconds per emulated second at
    which the cores would do nothing but local steps, from node 0's bare step alone, and from
    the steps' CPU as measured in the run) and the efficiency, limit / measured; in virtual
    time, what the keeper did."""
    training = outcome.training_wall_seconds
    per_s = training / run.duration if training and run.duration else None
    record: dict = {"clock": run.clock, "wall_per_emulated_s": per_s}
    steps = sum(r.get("steps", 0) for r in reports.values())
    in_run = sum(r.get("cpu_compute_s", 0.0) for r in reports.values()) / steps if steps else None
    demand = sum(1 / st for st in run.step_times)  # steps per emulated second, every node
    cores = outcome.cores or 1
    for name, step in (("bare", (outcome.bare_step or {}).get("cpu_s")), ("in_run", in_run)):
        if step:
            limit = demand * step / cores
            record[f"{name}_step_ms"] = round(step * 1000, 4)
            record[f"{name}_compute_limit"] = limit
            record[f"{name}_efficiency"] = limit / per_s if per_s else None
    record["cores"] = outcome.cores
    if outcome.keeper:
        record["keeper"] = outcome.keeper
    return record


def _action(a) -> dict:
    return {"t": round(a.t, 6), "kind": a.kind, "node": a.node, **a.values}


def write_report(plan, outcome) -> dict:
    summary = summarize(plan, outcome, load_evals(plan.run_dir))
    write_json_atomic(plan.run_dir / "summary.json", summary)
    # Per-link byte counters: node -> {sent|dropped: {destination: bytes}, delivered: {source: ..}}
    links = {str(n): report.links for n, report in sorted(outcome.done.items())}
    write_json_atomic(plan.run_dir / "links.json", links)
    plot_run(summary, plan.run_dir / "accuracy.png")
    if plan.run.timeline is not None:
        settings = plan.run.timeline
        write_timeline(plan.run_dir, summary, settings.lanes, settings.window)
    return summary
