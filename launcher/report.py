"""Turns what a run measured into summary.json, accuracy.png and a short printed summary."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

from node.files import read_jsonl, write_atomic, write_json_atomic
from transport.stats import LinkStats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The test loss each data set reports (MovieLens: the paper's metric, lower is better).
LOSS_METRIC = {"movielens": "RMSE"}


def load_evals(run_dir: Path) -> list[dict]:
    records = []
    for path in sorted((run_dir / "eval").glob("worker*.jsonl")):
        records.extend(read_jsonl(path))
    return records


def consensus_curve(run_dir: Path, num_nodes: int) -> list[dict]:
    """Consensus distance (1/n) sum_i ||x_i - mean x||^2 at each instant every node's kept
    snapshot exists (`eval.keep_snapshots=true`); empty when snapshots were not kept."""
    by_t: dict[int, dict[int, Path]] = defaultdict(dict)
    for path in (run_dir / "snapshots" / "kept").glob("n*_t*.npy"):
        node, t = path.stem[1:].split("_t")
        by_t[int(t)][int(node)] = path
    curve = []
    for t in sorted(by_t):
        if len(by_t[t]) < num_nodes:
            continue
        models = np.stack([np.load(p, allow_pickle=False) for p in by_t[t].values()])
        spread = models - models.mean(axis=0)
        curve.append({"t": t / 1000, "distance": float((spread**2).sum(axis=1).mean())})
    return curve


def accuracy_curve(evals: list[dict], num_nodes: int) -> list[dict]:
    """Mean, min and max over nodes at each evaluation instant every node reached."""
    by_t: dict[float, dict[int, dict]] = defaultdict(dict)
    for e in evals:
        by_t[round(e["t"], 6)][e["node"]] = e
    curve = []
    for t in sorted(by_t):
        nodes = by_t[t]
        if len(nodes) < num_nodes:
            continue
        acc = [e["accuracy"] for e in nodes.values()]
        loss = [e["loss"] for e in nodes.values()]
        point = {
            "t": t,
            "mean": sum(acc) / len(acc),
            "min": min(acc),
            "max": max(acc),
            "loss": sum(loss) / len(loss),
            "loss_min": min(loss),
            "loss_max": max(loss),
        }
        if all("global_loss" in e for e in nodes.values()):  # MovieLens: on everyone's test set
            point["global_loss"] = sum(e["global_loss"] for e in nodes.values()) / len(nodes)
        curve.append(point)
    return curve


def time_to_targets(curve: list[dict], targets: tuple[float, ...]) -> dict[str, float | None]:
    """When the mean test accuracy over nodes first reached each target, interpolated linearly
    between the two evaluation instants around the crossing (finer than the eval interval)."""
    reached: dict[str, float | None] = {}
    for target in targets:
        reached[f"{target:g}"] = None
        for before, after in zip([None, *curve], curve, strict=False):
            if after["mean"] < target:
                continue
            if before is None:
                reached[f"{target:g}"] = after["t"]
            else:
                share = (target - before["mean"]) / (after["mean"] - before["mean"])
                reached[f"{target:g}"] = before["t"] + share * (after["t"] - before["t"])
            break
    return reached


# Every counter a node's links report, added over nodes (a maximum is not a sum).
SUMMED_TOTALS = tuple(k for k in LinkStats().totals() if k != "max_delivery_lateness")


def summarize(plan, outcome, evals: list[dict]) -> dict:
    run = plan.run
    curve = accuracy_curve(evals, run.num_nodes)
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
        "status": "failed" if outcome.failed else "ok",
        "interrupted": outcome.interrupted,
        "startup_error": outcome.startup_error,
        "failed_nodes": {str(n): e.strip().splitlines()[-1] for n, e in outcome.errors.items()},
        "algorithm": run.algorithm.name,
        "dataset": run.dataset.name,
        "model": run.model,
        "loss_metric": LOSS_METRIC.get(run.dataset.name, "cross-entropy"),
        "num_nodes": run.num_nodes,
        "stragglers": list(run.network.stragglers),
        "duration_emulated_s": run.duration,
        "tdf": outcome.tdf,
        "calibration": outcome.calibration,
        "wall_seconds": round(outcome.wall_seconds, 2),
        "ready_seconds": outcome.ready_seconds,
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
        "time_to_accuracy": time_to_targets(curve, run.targets),
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
        "pids": outcome.pids,
        "curve": curve,
        "consensus": consensus_curve(plan.run_dir, run.num_nodes),
    }


def plot(summary: dict, path: Path) -> None:
    """Test accuracy (left) and test loss (right) against emulated time."""
    curve = summary["curve"]
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
    for target, reached in summary["time_to_accuracy"].items():
        ax.axhline(float(target), color="grey", lw=0.6, ls=":")
        if reached is not None:
            ax.axvline(reached, color="grey", lw=0.6, ls="--")
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


def save_figure(fig, path: Path) -> None:
    """A PNG written atomically, and the figure's memory released."""
    write_atomic(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


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


def render(summary: dict) -> str:
    mb = 1e6
    tot = summary["totals"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    ttas = ", ".join(
        f"{k}: {'not reached' if v is None else f'{v:.1f} s'}"
        for k, v in summary["time_to_accuracy"].items()
    )
    lag = summary["lag"]
    lines = [
        f"status            {summary['status']}"
        + (" (interrupted)" if summary["interrupted"] else ""),
        f"accuracy          final mean {pct(summary['final_mean_accuracy'])}, worst node "
        f"{pct(summary['final_worst_accuracy'])} at t={summary['final_t']} s "
        f"(start {pct(summary['initial_mean_accuracy'])})",
        f"test loss         {_loss_line(summary)}",
        f"time to accuracy  {ttas or 'no targets'}",
        f"traffic           sent {tot['bytes_sent'] / mb:.1f} MB, delivered "
        f"{tot['bytes_delivered'] / mb:.1f} MB, dropped {tot['bytes_dropped'] / mb:.1f} MB "
        f"+ {tot.get('bytes_flushed_downlink', 0) / mb:.1f} MB flushed from downlinks "
        f"(malformed messages {tot['messages_malformed']})",
        f"time dilation     tdf {summary['tdf'] or 0:.2f} ({summary['calibration']['mode']}); "
        f"wall {summary['wall_seconds']:.0f} s for {summary['duration_emulated_s']:g} s emulated",
        f"lag               max {lag['max_behind_s'] * 1000:.1f} ms (tolerance "
        f"{lag['tolerance_s'] * 1000:.0f} ms): "
        + (
            f"LAGGED on nodes {lag['lagging_nodes']} — timings are NOT faithful"
            if lag["lagged"]
            else "no node lagged"
        ),
    ]
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
    plot(summary, plan.run_dir / "accuracy.png")
    return summary


def main(argv: list[str] | None = None) -> int:
    """`python -m launcher.report DIR [DIR ...] [--out OUT]`: compare runs, see compare.py."""
    from launcher.compare import main as compare_main  # imported late: compare imports this

    return compare_main(argv)


if __name__ == "__main__":
    sys.exit(main())
