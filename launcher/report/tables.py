"""The comparison as text: the Markdown table and its explanation, and the CSV."""

from __future__ import annotations

import csv
import io

from launcher.report.metric import ACCURACY, metric_of_comparison

_metric = metric_of_comparison


def _columns(result: dict) -> list[tuple[str, str, tuple]]:
    """The final-value columns on the task's metric: (header, group key, how it is formatted);
    accuracy in %, RMSE as is (its test loss is the same number, so it is not repeated)."""
    metric = _metric(result)
    if metric is ACCURACY:
        return [
            ("final mean acc.", "final_mean_accuracy", (1, 100, "%")),
            ("final worst acc.", "final_worst_accuracy", (1, 100, "%")),
            ("final mean test loss", "final_mean_loss", (4,)),
        ]
    return [
        (f"final mean {metric.name}", f"final_mean_{metric.key}", (4,)),
        (f"final worst {metric.name}", f"final_worst_{metric.key}", (4,)),
    ]


def _fmt(stats: dict, std: bool, digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
    """`mean` or, with several seeds, `mean ± std`, scaled and rounded."""
    if stats["mean"] is None:
        return "n/a"
    mean = f"{stats['mean'] * scale:.{digits}f}"
    if not std or stats["std"] is None:
        return mean + unit
    return f"{mean} ± {stats['std'] * scale:.{digits}f}{unit}"


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    targets, metric = result["targets"], _metric(result)
    header = [
        "label",
        "runs (seeds)",
        *(f"time to {t} (s)" for t in targets),
        *(header for header, _, _ in _columns(result)),
        "sent (MB)",
        "dropped (MB)",
        "tdf",
        "late deliveries",
        "lagged",
        *(f"speed-up {t}" for t in targets),
    ]
    rows = []
    for g in result["groups"]:
        single = g["runs"] == 1

        def f(stats, digits=1, scale=1.0, unit="", std=not single):
            return _fmt(stats, std, digits, scale, unit)

        ttas = []
        for t in targets:
            s = g[f"time_to_{metric.key}"][t]
            if s["mean"] is not None:
                ttas.append(f(s, 2))
            else:
                ttas.append("not reached" + ("" if single else f" ({s['reached']}/{g['runs']})"))
        seeds = ", ".join(str(s) for s in g["seeds"])
        lagged = "yes" if g["lagged"] else "no"
        if g["lagged"] and not single:
            lagged += f" ({g['lagged_runs']}/{g['runs']})"
        rows.append(
            [
                g["label"],
                f"{g['runs']} ({seeds})",
                *ttas,
                *(f(g[key], *digits) for _, key, digits in _columns(result)),
                f(g["bytes_sent_mb"]),
                f(g["bytes_dropped_mb"]),
                f(g["tdf"]),
                f(g["late_deliveries_pct"], 1, 1, "%"),
                lagged,
                *("" if g["speedup"][t] is None else f"{g['speedup'][t]:.2f}" for t in targets),
            ]
        )
    return header, rows


def markdown_table(result: dict) -> str:
    return _markdown(*table_rows(result))


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, a cell's own | escaped."""

    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def _mb_to(group: dict, target: str, metric) -> dict:
    """The group's MB sent to `target` (mean and std; None when not every seed reached it)."""
    return group.get(f"mb_to_{metric.key}", {}).get(target, {"mean": None, "std": None})


def traffic_table(result: dict) -> str:
    """MB sent by all nodes when each target was reached (mean over seeds, ± std)."""
    targets, metric = result["targets"], _metric(result)
    header = ["label", *(f"MB sent to {t}" for t in targets)]
    rows = []
    for g in result["groups"]:
        cells = []
        for t in targets:
            stats = _mb_to(g, t, metric)
            cells.append("not reached" if stats["mean"] is None else _fmt(stats, g["runs"] > 1))
        rows.append([g["label"], *cells])
    return _markdown(header, rows)


def render_markdown(result: dict) -> str:
    lagged = " **LAGGED: timings of the lagged runs are not faithful.**" if result["lagged"] else ""
    metric = _metric(result)
    better = "" if metric.higher_is_better else " (lower is better)"
    lines = [
        "# Comparison of runs",
        "",
        f"- inputs: {', '.join(f'`{d}`' for d in result['inputs'])}",
        f"- {result['num_nodes']} nodes, {result['duration_s']:g} emulated seconds, network "
        f"{'/'.join(result['network'])}, "
        f"{'/'.join(str(s) for s in result['stragglers'])} stragglers",
        f"- {metric.name} targets on the mean test {metric.name} over nodes{better}: "
        + ", ".join(result["targets"]),
        "",
        f"Speed-up = time to the target of the first row (`{result['reference']}`, the "
        "reference) / time of this row: 2 means this row reached the target twice as fast, "
        "0.5 twice as slow; blank when either did not reach it. With several seeds a cell is "
        "mean ± std over seeds (population std, ddof=0), a time to target is given only if every "
        "seed reached it (else how many did), and the speed-up is the ratio of the means. Times "
        f"are emulated seconds, recomputed from each run's {metric.name} curve (linear between "
        "evaluation instants, as in summary.json). A run marked lagged fell behind its compute "
        "schedule: its timings are not faithful. Late deliveries = share of messages released "
        "more than 5 emulated ms after their delivery time (the host's transport fell behind). "
        "Dropped = bytes a flush discarded: never "
        "sent, or sent and cut while queued in the receiver's downlink." + lagged,
        "",
        markdown_table(result),
    ]
    if result["warnings"]:
        lines += ["", "Warnings:", "", *(f"- {w}" for w in result["warnings"])]
    lines += [
        "",
        "## Traffic to each target",
        "",
        "MB sent by all nodes (headers, values and what describes them: indices, scales) up to "
        "the instant the target was reached, from each node's per-round byte counts (linear "
        "between its rounds); given only when every seed reached the target.",
        "",
        traffic_table(result),
    ]
    return "\n".join(lines) + "\n"


def render_csv(result: dict) -> str:
    targets, metric = result["targets"], _metric(result)
    cols = ["label", "runs", "seeds"]
    for t in targets:
        cols += [f"tta_{t}_mean_s", f"tta_{t}_std_s", f"tta_{t}_seeds_reached"]
    measures = (
        *(key for _, key, _ in _columns(result)),
        "bytes_sent_mb",
        "bytes_dropped_mb",
        "tdf",
        "late_deliveries_pct",
    )
    for m in measures:
        cols += [f"{m}_mean", f"{m}_std"]
    cols += ["lagged_runs", *(f"speedup_{t}" for t in targets)]
    cols += [f"mb_to_{t}_{m}" for t in targets for m in ("mean", "std")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(cols)
    for g in result["groups"]:
        row = [g["label"], g["runs"], " ".join(str(s) for s in g["seeds"])]
        for t in targets:
            s = g[f"time_to_{metric.key}"][t]
            row += [s["mean"], s["std"], s["reached"]]
        for m in measures:
            row += [g[m]["mean"], g[m]["std"]]
        row += [g["lagged_runs"], *(g["speedup"][t] for t in targets)]
        for t in targets:
            stats = _mb_to(g, t, metric)
            row += [stats["mean"], stats["std"]]
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()
