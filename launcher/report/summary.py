"""A run's printed summary, from its summary.json alone: reading a finished run loads no torch,
node runtime or transport."""

from __future__ import annotations

from collections import Counter

from launcher.report.metric import metric_of_summary

# The reasons a message is lost, in the order the transport counts them
# (transport.stats.LOST_REASONS; tests/test_layout.py checks that they agree).
LOST_REASONS = ("down", "link", "partition", "gone")


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
    lost = {r: tot.get(f"messages_lost_{r}", 0) for r in LOST_REASONS}
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
