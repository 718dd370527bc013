"""The run's timeline, from what every node recorded (timeline/NNN.jsonl) and the summary's
absences and crashes: timeline.json in the Chrome trace event format (Perfetto,
chrome://tracing; one process per node, emulated microseconds) and timeline.png."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from launcher.report.plots import save_figure  # noqa: E402
from node.files import read_jsonl, write_json_atomic  # noqa: E402

US = 1e6  # trace timestamps are microseconds; ours are emulated seconds
COMPUTE, NETWORK = 0, 1  # each node's two lanes (threads): its training, its messages


def node_events(run_dir: Path) -> dict[int, list[dict]]:
    """Each node's recorded events, by node id."""
    return {
        int(path.stem): read_jsonl(path)
        for path in sorted((Path(run_dir) / "timeline").glob("*.jsonl"))
    }


def _slice(name: str, node: int, lane: int, start: float, dur: float, **args) -> dict:
    event = {"ph": "X", "name": name, "pid": node, "tid": lane, "ts": start * US, "dur": dur * US}
    return {**event, "args": args} if args else event


def chrome_trace(recorded: dict[int, list[dict]], summary: dict) -> dict:
    """Every node's compute bursts, waits and merges (`recorded`: `node_events`), each message
    as a flow from its sender (the span it took to leave) to its receiver (its delivery), and
    absences and crashes."""
    events, flows, dropped = [], 0, {}
    nodes = range(summary.get("num_nodes") or len(recorded))
    for n in nodes:
        events.append({"ph": "M", "name": "process_name", "pid": n, "args": {"name": f"node {n}"}})
        events.append(
            {"ph": "M", "name": "process_sort_index", "pid": n, "args": {"sort_index": n}}
        )
        for lane, name in ((COMPUTE, "training"), (NETWORK, "messages")):
            events.append(
                {"ph": "M", "name": "thread_name", "pid": n, "tid": lane, "args": {"name": name}}
            )
    for node, recs in recorded.items():
        for r in recs:
            kind = r["k"]
            if kind in ("compute", "wait"):
                events.append(_slice(kind, node, COMPUTE, r["t"], r["d"]))
            elif kind == "merge":
                events.append(
                    {"ph": "i", "s": "t", "name": "merge", "pid": node, "tid": COMPUTE,
                     "ts": r["t"] * US, "args": {"round": r["round"], "received": r["received"]}}
                )  # fmt: skip
            elif kind == "msg":
                flows += 1
                src, name = r["src"], r["kind"]
                events.append(_slice(f"send {name}", src, NETWORK, r["t0"], r["t1"] - r["t0"]))
                # 1 µs long: a flow's end binds to the slice around it
                events.append(_slice(f"{name} from {src}", node, NETWORK, r["t"], 1 / US))
                common = {"name": name, "cat": "message", "id": flows}
                events.append({**common, "ph": "s", "pid": src, "tid": NETWORK, "ts": r["t0"] * US})
                events.append(
                    {**common, "ph": "f", "bp": "e", "pid": node, "tid": NETWORK, "ts": r["t"] * US}
                )
            elif kind == "dropped":
                dropped[node] = dropped.get(node, 0) + r["n"]
    end = summary.get("duration_emulated_s") or 0.0
    for node, spans in (summary.get("absent") or {}).items():
        for start, stop in spans:
            stop = end if stop is None else stop
            events.append(_slice("absent", int(node), COMPUTE, start, stop - start))
    for node, times in (summary.get("crashed") or {}).items():
        for t in times:
            events.append({"ph": "i", "s": "p", "name": "crash", "pid": int(node), "ts": t * US})
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"messages": flows, "events_not_kept": dropped, "clock": "emulated"},
    }


def plot_timeline(
    recorded: dict[int, list[dict]], summary: dict, lanes: int, window: float | None, path: Path
):
    """One lane per node for the first `lanes` nodes over the first `window` emulated seconds:
    compute (blue), waits (orange), absences (grey), merges (ticks), and each message between
    two drawn nodes as a line from when it started leaving to its delivery."""
    end = summary.get("duration_emulated_s") or 1.0
    window = min(window or end, end)
    shown = sorted(n for n in recorded if n < lanes)
    stragglers = set(summary.get("stragglers") or [])
    fig, ax = plt.subplots(figsize=(12, 0.45 * max(len(shown), 4) + 1.2), dpi=110)
    for node in shown:
        recs = recorded[node]
        y = node
        for kind, colour in (("compute", "tab:blue"), ("wait", "tab:orange")):
            bars = [(r["t"], r["d"]) for r in recs if r["k"] == kind and r["t"] < window]
            ax.broken_barh(
                bars, (y - 0.3, 0.6), color=colour, label=kind if node == shown[0] else None
            )
        merges = [r["t"] for r in recs if r["k"] == "merge" and r["t"] <= window]
        ax.plot(merges, [y] * len(merges), "|", color="black", ms=10)
        for r in recs:
            if r["k"] == "msg" and r["src"] in shown and r["t0"] <= window:
                slow = r["src"] in stragglers
                ax.plot(
                    [r["t0"], r["t"]], [r["src"], y], color="tab:red" if slow else "grey",
                    lw=0.5, alpha=0.5 if slow else 0.3,
                )  # fmt: skip
    for node, spans in (summary.get("absent") or {}).items():
        if int(node) in shown:
            bars = [(a, (end if b is None else b) - a) for a, b in spans]
            ax.broken_barh(bars, (int(node) - 0.3, 0.6), color="lightgrey", hatch="//")
    ax.plot([], [], "|", color="black", label="merge")
    ax.plot([], [], color="grey", lw=0.8, label="message: leaves sender -> delivered")
    ax.plot([], [], color="tab:red", lw=0.8, label="... from a straggler")
    ax.set_xlim(0, window)
    ax.set_ylim(-0.8, (shown[-1] if shown else 1) + 0.8)
    ax.set_yticks(shown, [f"node {n}" for n in shown])
    ax.invert_yaxis()
    ax.set_xlabel("emulated time (s)")
    ax.set_title(
        f"{summary.get('algorithm', '?')}, {summary.get('num_nodes', '?')} nodes: the first "
        f"{len(shown)} nodes, {window:g} emulated s (stragglers: {summary.get('stragglers', [])})",
        fontsize=10,
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, ncol=5)
    fig.tight_layout()
    save_figure(fig, path)


def write_timeline(run_dir: Path, summary: dict, lanes: int, window: float | None) -> dict:
    """timeline.json and timeline.png in `run_dir`; returns the trace's otherData."""
    recorded = node_events(run_dir)  # read once: up to tens of MB at 60 nodes
    trace = chrome_trace(recorded, summary)
    write_json_atomic(Path(run_dir) / "timeline.json", trace, indent=None)  # compact: it is big
    plot_timeline(recorded, summary, lanes, window, Path(run_dir) / "timeline.png")
    return trace["otherData"]
