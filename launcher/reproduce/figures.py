"""A reproduction's figures: per scenario the mean curve over seeds of each algorithm with its
95% band; per part an overview of the final metric and the reference's speed-ups."""

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
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for stats in scenario["algorithms"]:
        curve = stats.get("curve") or {}
        if not curve.get("t"):
            continue
        n = len(stats["seeds"])
        (line,) = ax.plot(
            curve["t"], curve["mean"], lw=2, label=f"{stats['algorithm']} ({n} seeds)"
        )
        low, high = curve["low"], curve["high"]
        if part["metric"] == "accuracy":  # an interval of a share never leaves [0, 1]
            low, high = [max(0.0, v) for v in low], [min(1.0, v) for v in high]
        ax.fill_between(curve["t"], low, high, color=line.get_color(), alpha=0.2)
    for target in part["targets"]:
        ax.axhline(float(target), color="grey", lw=0.6, ls=":")
    metric = part["metric"] or "metric"
    ax.set_xlabel("emulated time (s)")
    ax.set_ylabel(
        f"test {metric}, mean over nodes"
        + ("" if part["higher_is_better"] else " (lower is better)")
    )
    ax.set_title(f"{part['name']}: {scenario['scenario']} — mean over seeds, 95% band")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
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
