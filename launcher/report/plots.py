"""The figures: one run's metrics against emulated time, and a comparison's curves against
emulated time and against bytes sent."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from launcher.report.metric import ACCURACY, metric_of_comparison, metric_of_summary
from node.files import write_atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path) -> None:
    """A PNG written atomically, and the figure's memory released."""
    write_atomic(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


def plot_run(summary: dict, path: Path) -> None:
    """Test accuracy (left) and test loss (right) against emulated time."""
    curve = summary["curve"]
    metric = metric_of_summary(summary)
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    if curve:
        t = [p["t"] for p in curve]
        ax.fill_between(
            t,
            [p["min"] for p in curve],
            [p["max"] for p in curve],
            alpha=0.25,
            label="min–max over nodes",
        )
        ax.plot(t, [p["mean"] for p in curve], lw=2, label="mean over nodes")
        ax_loss.fill_between(
            t,
            [p.get("loss_min", p["loss"]) for p in curve],
            [p.get("loss_max", p["loss"]) for p in curve],
            alpha=0.25,
            label="min–max over nodes",
        )
        ax_loss.plot(t, [p["loss"] for p in curve], lw=2, label="mean over nodes (own test set)")
        if all("global_loss" in p for p in curve):
            ax_loss.plot(
                t, [p["global_loss"] for p in curve], lw=1.5, ls="--", label="on every test set"
            )
    for node, t in (summary.get("departed") or {}).items():  # the deaths, on both panels
        for a in (ax, ax_loss):
            a.axvline(t, color="red", lw=0.8, ls="-.")
        ax.annotate(f"node {node} died", (t, 0.02), color="red", fontsize=7, rotation=90)
    _mark_scenario(summary.get("scenario") or [], (ax, ax_loss))
    judged = ax if metric is ACCURACY else ax_loss  # where the targets are drawn
    for target, reached in summary[f"time_to_{metric.key}"].items():
        judged.axhline(float(target), color="grey", lw=0.6, ls=":")
        if reached is not None:
            judged.axvline(reached, color="grey", lw=0.6, ls="--")
    lag = " — LAGGED: timings not faithful" if summary["lag"]["lagged"] else ""
    fig.suptitle(
        f"{summary['algorithm']} on {summary.get('dataset', 'mnist1d')}, "
        f"{summary['num_nodes']} nodes, {len(summary['stragglers'])} stragglers, "
        f"tdf {summary['tdf'] or 0:.1f}{lag}",
        fontsize=10,
    )
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax_loss.set_ylabel(f"test loss ({summary.get('loss_metric', 'cross-entropy')})")
    for a, where in ((ax, "lower right"), (ax_loss, "upper right")):
        a.set_xlabel("emulated time (s)")
        a.grid(alpha=0.3)
        a.legend(loc=where, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _title(result: dict, what: str) -> str:
    lag = " — LAGGED — not faithful" if result["lagged"] else ""
    stragglers = "/".join(str(s) for s in result["stragglers"])
    return f"{what}: {result['num_nodes']} nodes, {stragglers} stragglers{lag}"


def _legend(g: dict) -> str:
    return g["label"] + (f" ({g['runs']} seeds)" if g["runs"] > 1 else "")


def plot_metric(result: dict, path: Path) -> None:
    """Each group's mean over nodes, its worst node dashed, the band from lowest to highest."""
    metric = metric_of_comparison(result)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, g in enumerate(result["groups"]):
        c, color = g["curve"], f"C{i % 10}"
        ax.fill_between(c["t"], c["min"], c["max"], color=color, alpha=0.15, lw=0)
        ax.plot(c["t"], c["mean"], color=color, lw=2, label=_legend(g))
        ax.plot(c["t"], c["worst"], color=color, lw=1, ls="--")
    for t in result["targets"]:
        ax.axhline(float(t), color="grey", lw=0.7, ls=":")
    what = "mean over nodes, worst node dashed, band min–max"
    ax.set_title(_title(result, what), fontsize=10)
    ax.set_xlabel("emulated time (s)")
    _finish(fig, ax, path, metric)


def plot_bytes(result: dict, path: Path) -> None:
    metric = metric_of_comparison(result)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, g in enumerate(result["groups"]):
        c = g["curve"]
        ax.plot(c["mb"], c["mean"], color=f"C{i % 10}", lw=2, marker=".", label=_legend(g))
    for t in result["targets"]:
        ax.axhline(float(t), color="grey", lw=0.7, ls=":")
    ax.set_title(_title(result, "mean over nodes vs traffic"), fontsize=10)
    ax.set_xlabel("bytes sent by all nodes so far (MB)")
    _finish(fig, ax, path, metric)


def _finish(fig, ax, path: Path, metric) -> None:
    ax.set_ylabel(metric.label)
    if metric.bounded:
        ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if metric.higher_is_better else "upper right", fontsize=8)
    save_figure(fig, path)


# How each kind of scenario action is drawn: colour, and a short label
SCENARIO_STYLE = {
    "crash": ("red", "crash {node}"),
    "leave": ("purple", "leave {node}"),
    "join": ("green", "join {node}"),
    "partition": ("orange", "partition"),
    "heal": ("orange", "heal"),
    "link": ("grey", "link {node}"),
    "path": ("grey", "path {node}"),
    "link_down": ("brown", "link {node} down"),
    "link_up": ("brown", "link {node} up"),
}
MAX_LABELS = 12  # beyond, the lines are drawn unlabelled (churn makes hundreds)


def _mark_scenario(actions: list[dict], axes) -> None:
    """A dotted line at every scenario action on both panels, labelled when few."""
    for i, action in enumerate(actions):
        colour, label = SCENARIO_STYLE.get(action["kind"], ("black", "{kind}"))
        for a in axes:
            a.axvline(action["t"], color=colour, lw=0.6, ls=":", alpha=0.8)
        if len(actions) <= MAX_LABELS:
            text = label.format(**action)
            axes[0].annotate(
                text, (action["t"], 0.98 - 0.05 * (i % 6)), color=colour, fontsize=6, rotation=0
            )
