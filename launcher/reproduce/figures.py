"""A reproduction's figures: per scenario the mean curve over seeds of each algorithm with its
95% band, against emulated time and against the MB sent; per part an overview of the final
metric and the reference's speed-ups."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from launcher.report.plots import save_figure  # noqa: E402


def figure_name(part: str, scenario: str) -> str:
    return f"figures/{part}-{scenario}.png"


def plot_scenario(part: dict, scenario: dict, path: Path) -> None:
    """Against emulated time; beside it, against the MB sent when the runs counted it."""
    stats_list = [s for s in scenario["algorithms"] if (s.get("curve") or {}).get("t")]
    traffic = bool(stats_list) and all(s["curve"].get("mb") for s in stats_list)
    fig, axes = plt.subplots(1, 2 if traffic else 1, figsize=(13 if traffic else 7, 4.2), dpi=110)
    axes = list(np.atleast_1d(axes))
    for i, stats in enumerate(stats_list):
        curve, colour = stats["curve"], f"C{i % 10}"
        n = len(stats["seeds"])
        label = f"{stats['algorithm']} ({n} seed{'s' if n != 1 else ''})"
        low, high = curve["low"], curve["high"]
        if part["metric"] == "accuracy":  # an interval of a share never leaves [0, 1]
            low, high = [max(0.0, v) for v in low], [min(1.0, v) for v in high]
        for ax, x in zip(axes, ("t", "mb"), strict=False):
            ax.plot(curve[x], curve["mean"], lw=2, color=colour, label=label)
            ax.fill_between(curve[x], low, high, color=colour, alpha=0.2)
    metric = part["metric"] or "metric"
    for ax, xlabel in zip(axes, ("emulated time (s)", "MB sent by all nodes so far"), strict=False):
        for target in part["targets"]:
            ax.axhline(float(target), color="grey", lw=0.6, ls=":")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[0].set_ylabel(
        f"test {metric}, mean over nodes"
        + ("" if part["higher_is_better"] else " (lower is better)")
    )
    axes[0].set_title(f"{part['name']}: {scenario['scenario']} — mean over seeds, 95% band")
    if traffic:
        axes[1].set_title("the same against traffic")
    save_figure(fig, path)


def overview_name(part: str) -> str:
    return f"figures/{part}-overview.png"


def _bars(ax, groups: list[str], series: dict[str, list[dict | None]]) -> None:
    """Grouped bars with their 95% intervals as error bars; a missing value leaves a gap."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        ys = [v["value"] if v and v.get("value") is not None else np.nan for v in values]
        pairs = list(zip(ys, values, strict=True))
        lo = [y - v["low"] if v and v.get("low") is not None else 0 for y, v in pairs]
        hi = [v["high"] - y if v and v.get("high") is not None else 0 for y, v in pairs]
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            ys,
            width,
            yerr=[lo, hi],
            capsize=3,
            label=label,
        )
    ax.set_xticks(x, groups, rotation=20, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def plot_overview(part: dict, reference: str, path: Path) -> None:
    """Left: the final metric of each algorithm per scenario; right: the reference's speed-up
    over each other algorithm at the last target both reached (1 = as fast)."""
    scenarios = [s["scenario"] for s in part["scenarios"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110)
    finals: dict[str, list] = {}
    for s in part["scenarios"]:
        for stats in s["algorithms"]:
            if stats:
                finals.setdefault(stats["algorithm"], []).append(stats["final"])
    _bars(left, scenarios, finals)
    left.set_ylabel(f"final test {part['metric']} (mean over seeds, 95% interval)")
    if part["metric"] == "accuracy":
        left.set_ylim(0, 1)
    speedups: dict[str, list] = {}
    for s in part["scenarios"]:
        for row in s["speedups"]:
            speedups.setdefault(f"vs {row['versus']}", []).append(row)
    if speedups:
        _bars(right, scenarios, speedups)
        right.axhline(1.0, color="black", lw=0.8, ls="--")
    right.set_ylabel(f"{reference}'s speed-up to the last common target")
    fig.suptitle(f"{part['title']}")
    fig.tight_layout()
    save_figure(fig, path)
