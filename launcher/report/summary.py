"""One run's report: summary.json, accuracy.png, links.json and the short printed summary."""

from __future__ import annotations

import dataclasses
from collections import Counter

from launcher.clocks import clock_record
from launcher.report.curves import (
    accuracy_curve,
    bytes_sent_at,
    consensus_curve,
    load_evals,
    load_node_records,
)
from launcher.report.metric import METRICS, metric_of_summary, time_to_targets
from launcher.report.plots import plot_run
from launcher.report.timeline import write_timeline
from node.data import TASKS
from node.files import write_json_atomic
from transport import Reachability
from transport.stats import LOST_COUNTED, LinkStats

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


def _time_line(summary: dict) -> str:
    time_ = summary.get("time") or {}
    wall = f"wall {summary['wall_seconds']:.0f} s for {summary['duration_emulated_s']:g} s emulated"
    if summary.get("clock_mode", "wall") == "wall":
        mode = summary["calibration"]["mode"]
        return f"time dilation     tdf {summary['tdf'] or 0:.2f} ({mode}); {wall}"
    per_s = time_.get("wall_per_emulated_s")
    eff = time_.get("bare_efficiency")
    return (
        f"virtual time      {wall}"
        + (f" ({per_s:.2f} wall s per emulated s in training" if per_s else " (")
        + (f", efficiency {eff:.2f} against the bare step)" if eff else ")")
    )


def _loss_line(summary: dict) -> str:
    if summary.get("final_mean_loss") is None:
        return "n/a"
    line = (
        f"{summary.get('loss_metric', 'cross-entropy')}: final mean "
        f"{summary['final_mean_loss']:.4f}, worst node {summary['final_worst_loss']:.4f}"
    )
    if summary.get("final_global_loss") is not None:
        line += f", on every node's test set {summary['final_global_loss']:.4f}"
    return line


def _departures(summary: dict) -> str:
    departed = summary.get("departed") or {}
    if not departed:
        return ""
    gone = ", ".join(f"node {n} at t={t:.1f} s" for n, t in departed.items())
    final = (summary.get("curve") or [{}])[-1].get("nodes")
    return f": {gone} died; the others went on" + (f" ({final} at the end)" if final else "")


def _scenario(summary: dict) -> str:
    """What the scenario did, and what it cost in messages; empty without one."""
    tot = summary["totals"]
    lost = {r: tot.get(f"messages_lost_{r}", 0) for r in LOST_COUNTED}
    actions = Counter(a["kind"] for a in summary.get("scenario") or [])
    if not actions and not any(lost.values()):
        return ""
    did = ", ".join(f"{count} {kind}" for kind, count in actions.items()) or "none"
    nodes = [p["nodes"] for p in summary.get("curve") or [] if "nodes" in p]
    present = f"; nodes present {min(nodes)}-{max(nodes)}" if nodes else ""
    costs = ", ".join(f"{reason} {count}" for reason, count in lost.items())
    return f"{did}{present}; messages lost: {costs}"


def _wire_line(summary: dict, metric) -> str:
    """What the bytes sent were, with the codec, and how many MB each target took."""
    tot, mb = summary["totals"], 1e6
    sharing = summary.get("sharing") or {"name": "full"}
    codec = " ".join(f"{k}={v}" for k, v in sharing.items() if k != "name")
    to = summary.get(f"mb_to_{metric.key}") or {}
    reached = ", ".join(f"{k}: {v:.1f} MB" for k, v in to.items() if v is not None)
    return (
        f"values {tot['bytes_sent_values'] / mb:.1f} MB, metadata "
        f"{tot['bytes_sent_metadata'] / mb:.1f} MB, headers {tot['bytes_sent_headers'] / mb:.1f} "
        f"MB (sharing={sharing['name']}{' ' + codec if codec else ''})"
        + (f"; sent to reach {reached}" if reached else "")
    )


def _action(a) -> dict:
    return {"t": round(a.t, 6), "kind": a.kind, "node": a.node, **a.values}


def _headline(summary: dict, metric, pct) -> str:
    """The task's metric first: accuracy, or for MovieLens the RMSE (lower is better)."""
    if metric.higher_is_better:
        return (
            f"accuracy          final mean {pct(summary['final_mean_accuracy'])}, worst node "
            f"{pct(summary['final_worst_accuracy'])} at t={summary['final_t']} s "
            f"(start {pct(summary['initial_mean_accuracy'])})"
        )
    curve = summary.get("curve") or []
    if not curve:
        return f"{metric.name:<17} n/a"
    return (
        f"{metric.name:<17} final mean {curve[-1][metric.mean]:.4f}, worst node "
        f"{curve[-1][metric.worst]:.4f} at t={summary['final_t']} s "
        f"(start {curve[0][metric.mean]:.4f}; lower is better)"
    )


def render(summary: dict) -> str:
    mb = 1e6
    metric = metric_of_summary(summary)
    tot = summary["totals"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    ttas = ", ".join(
        f"{k}: {'not reached' if v is None else f'{v:.1f} s'}"
        for k, v in summary[f"time_to_{metric.key}"].items()
    )
    lag = summary["lag"]
    lines = [
        f"status            {summary['status']}"
        + (" (interrupted)" if summary["interrupted"] else "")
        + _departures(summary),
        _headline(summary, metric, pct),
        f"test loss         {_loss_line(summary)}",
        f"time to {metric.name:<9} {ttas or 'no targets'}",
        f"traffic           sent {tot['bytes_sent'] / mb:.1f} MB, delivered "
        f"{tot['bytes_delivered'] / mb:.1f} MB, dropped {tot['bytes_dropped'] / mb:.1f} MB "
        f"+ {tot.get('bytes_flushed_downlink', 0) / mb:.1f} MB flushed from downlinks "
        f"(malformed messages {tot['messages_malformed']}"
        + (f", refused handshakes {n}" if (n := tot.get("handshakes_refused")) else "")
        + ")",
        _time_line(summary),
    ]
    if "bytes_sent_values" in tot:  # runs made before the bytes were told apart have none
        lines.insert(5, f"on the wire       {_wire_line(summary, metric)}")
    if summary.get("clock_mode", "wall") == "wall":  # in virtual time nothing is ever late
        lines.append(
            f"lag               max {lag['max_behind_s'] * 1000:.1f} ms (tolerance "
            f"{lag['tolerance_s'] * 1000:.0f} ms): "
            + (
                f"LAGGED on nodes {lag['lagging_nodes']} — timings are NOT faithful"
                if lag["lagged"]
                else "no node lagged"
            )
        )
    clock = summary.get("clock") or {}
    if clock.get("max_uncertainty_emulated_ms") is not None:
        lines.append(
            f"clocks            offset at most {clock['max_offset_ms']:.3f} ms, known to "
            f"{clock['max_uncertainty_emulated_ms']:.3f} emulated ms"
            + (" — more than the lag tolerance: NOT faithful" if clock["flagged"] else "")
        )
    scenario_line = _scenario(summary)
    if scenario_line:
        lines.insert(1, f"scenario          {scenario_line}")
    if summary["startup_error"]:
        lines.append(f"start-up error    {summary['startup_error']}")
    if summary["failed_nodes"]:
        lines.append(f"failed nodes      {summary['failed_nodes']}")
    lines.append(f"run directory     {summary['run_dir']}")
    return "\n".join(lines)


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
