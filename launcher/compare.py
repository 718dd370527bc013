"""Compares finished runs: accuracy against time and bytes, time to target and speed-up tables."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from launcher.report import save_figure, time_to_targets
from node.files import read_jsonl, write_json_atomic, write_text_atomic

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MB = 1e6


class CompareError(Exception):
    """The runs cannot be compared; the message says why and names the directories."""


@dataclass
class Run:
    """One finished run directory, as read back from what the launcher wrote."""

    dir: Path
    summary: dict
    config: dict
    overrides: list[str]
    label: str = ""

    @property
    def algorithm(self) -> str:
        return self.config.get("algorithm", {}).get("name") or self.summary.get("algorithm", "?")

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def targets(self) -> tuple[float, ...]:
        targets = self.config.get("eval", {}).get("targets")
        if targets is None:
            targets = [float(k) for k in self.summary.get("time_to_accuracy", {})]
        return tuple(float(t) for t in targets)


@dataclass
class Group:
    """The runs that share a label and differ only by seed."""

    label: str
    runs: list[Run] = field(default_factory=list)


# ---------------------------------------------------------------- finding and reading runs


def _job_key(path: Path):
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def find_run_dirs(dirs: list[Path]) -> tuple[list[Path], list[str]]:
    """Run dirs (with summary.json) given directly or as the job subdirs of a sweep dir."""
    found, warnings = [], []
    for d in dirs:
        if not d.is_dir():
            raise CompareError(f"not a directory: {d}")
        if (d / "summary.json").is_file():
            found.append(d)
            continue
        jobs = sorted(
            (sub for sub in d.iterdir() if (sub / "summary.json").is_file()), key=_job_key
        )
        if not jobs:
            warnings.append(f"{d}: no run directory with a summary.json, skipped")
        found.extend(jobs)
    if not found:
        raise CompareError("no run directory (one with summary.json) found in: " + _names(dirs))
    return found, warnings


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides hydra saved as a YAML list of strings (`- key=value`)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in OmegaConf.to_container(OmegaConf.load(path)) or []]


def load_run(run_dir: Path) -> Run:
    return Run(
        dir=run_dir,
        summary=_read_json(run_dir / "summary.json"),
        config=_read_json(run_dir / "config.json"),
        overrides=read_overrides(run_dir),
    )


# ---------------------------------------------------------------- grouping and checks


def _is_seed(override: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] == "seed"


def assign_labels(runs: list[Run]) -> list[Group]:
    """Label = overrides minus seed and minus those common to every run, else the algorithm.
    Groups keep the order of their first run, so the first one given is the reference."""
    own = [[o for o in run.overrides if not _is_seed(o)] for run in runs]
    common = set.intersection(*(set(o) for o in own)) if own else set()
    groups: dict[str, Group] = {}
    for run, overrides in zip(runs, own, strict=True):
        run.label = " ".join(o for o in overrides if o not in common) or run.algorithm
        groups.setdefault(run.label, Group(run.label)).runs.append(run)
    return list(groups.values())


def _names(paths) -> str:
    return ", ".join(str(p) for p in paths)


def _in(targets: tuple, runs: list[Run]) -> str:
    return f"{list(targets)} in {_names(r.dir for r in runs if r.targets == targets)}"


def check_comparable(runs: list[Run]) -> list[str]:
    """Raise if the runs differ in size or length; warnings for what only weakens the picture."""
    for key, what in (("num_nodes", "num_nodes"), ("duration_emulated_s", "duration")):
        values: dict = {}
        for run in runs:
            values.setdefault(run.summary.get(key), []).append(run.dir)
        if len(values) > 1:
            parts = "; ".join(f"{v} in {_names(ds)}" for v, ds in values.items())
            raise CompareError(f"runs disagree on {what}: {parts}")
    warnings = []
    targets = dict.fromkeys(run.targets for run in runs)  # in order of appearance
    if len(targets) > 1:
        warnings.append(
            "runs have different accuracy targets "
            + "; ".join(_in(t, runs) for t in targets)
            + " — every target is recomputed from each run's curve"
        )
    for run in runs:
        if run.summary.get("status") != "ok":
            warnings.append(f"{run.dir}: status {run.summary.get('status')}, compared anyway")
    for run in runs:
        twins = [r for r in runs if r.label == run.label and r.seed == run.seed]
        if len(twins) > 1 and twins[0] is run:
            warnings.append(f"{run.label!r}: {len(twins)} runs with seed {run.seed}")
    return warnings


# ---------------------------------------------------------------- the numbers


def bytes_sent_at(node_records: list[list[dict]], times) -> np.ndarray:
    """Bytes sent by all nodes up to each instant: each node's cumulative count, linear between
    its rounds (0 at t=0, flat after its last round), summed over nodes."""
    times = np.asarray(times, dtype=float)
    total = np.zeros_like(times)
    for records in node_records:
        points = sorted((r["t"], r["bytes_sent"]) for r in records if "bytes_sent" in r)
        if not points:
            continue
        t, b = zip(*([(0.0, 0.0)] + points), strict=True)
        total += np.interp(times, t, b)
    return total


def load_node_records(run_dir: Path) -> list[list[dict]]:
    return [read_jsonl(p) for p in sorted((run_dir / "nodes").glob("*.jsonl"))]


def mean_std(values) -> dict:
    """Mean and population standard deviation (ddof=0) of the values that exist."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs)), "n": len(xs)}


def group_curve(runs: list[Run], node_records: dict[Path, list[list[dict]]]) -> dict:
    """Mean over seeds of the mean-over-nodes curve, min of mins, max of maxes, and the bytes
    sent by all nodes at each instant, on the first run's evaluation grid up to the shortest."""
    curves = [r.summary.get("curve") or [] for r in runs]
    curves = [c for c in curves if c]
    if not curves:
        return {"t": [], "mean": [], "min": [], "max": [], "mb": []}
    end = min(c[-1]["t"] for c in curves)
    grid = np.array([p["t"] for p in curves[0] if p["t"] <= end + 1e-9])

    def at(curve, key):
        return np.interp(grid, [p["t"] for p in curve], [p[key] for p in curve])

    ran = [r for r in runs if r.summary.get("curve")]
    sent = [bytes_sent_at(node_records.get(r.dir, []), grid) for r in ran]
    return {
        "t": grid.tolist(),
        "mean": np.mean([at(c, "mean") for c in curves], axis=0).tolist(),
        "min": np.min([at(c, "min") for c in curves], axis=0).tolist(),
        "max": np.max([at(c, "max") for c in curves], axis=0).tolist(),
        "mb": (np.mean(sent, axis=0) / MB).tolist(),
    }


def group_stats(group: Group, targets: tuple[float, ...]) -> dict:
    runs = group.runs
    tta = {}
    for target in targets:
        key = f"{target:g}"
        times = [time_to_targets(r.summary.get("curve") or [], (target,))[key] for r in runs]
        reached = sum(t is not None for t in times)
        stats = mean_std(times) if reached == len(runs) else {"mean": None, "std": None}
        tta[key] = {"mean": stats["mean"], "std": stats["std"], "reached": reached}
    totals = [r.summary.get("totals", {}) for r in runs]
    return {
        "label": group.label,
        "runs": len(runs),
        "seeds": [r.seed for r in runs],
        "dirs": [str(r.dir) for r in runs],
        "time_to_accuracy": tta,
        "final_mean_accuracy": _ms(r.summary.get("final_mean_accuracy") for r in runs),
        "final_worst_accuracy": _ms(r.summary.get("final_worst_accuracy") for r in runs),
        # The paper's MovieLens metric is this one (RMSE, lower is better).
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


def add_speedups(stats: list[dict], targets: tuple[float, ...]) -> None:
    """speed-up = time to target of the first group / this group's (mean over seeds)."""
    ref = stats[0]["time_to_accuracy"]
    for row in stats:
        row["speedup"] = {}
        for target in targets:
            key = f"{target:g}"
            first, this = ref[key]["mean"], row["time_to_accuracy"][key]["mean"]
            ok = first is not None and this is not None and this > 0
            row["speedup"][key] = first / this if ok else None


def compare(dirs: list[Path]) -> dict:
    """Everything the comparison reports, as plain data; raises CompareError if it cannot."""
    run_dirs, warnings = find_run_dirs(dirs)
    runs = [load_run(d) for d in run_dirs]
    groups = assign_labels(runs)
    warnings += check_comparable(runs)
    targets = tuple(sorted({t for r in runs for t in r.targets}))
    node_records = {r.dir: load_node_records(r.dir) for r in runs}
    stats = [group_stats(g, targets) for g in groups]
    add_speedups(stats, targets)
    for g, row in zip(groups, stats, strict=True):
        row["curve"] = group_curve(g.runs, node_records)
    first = runs[0]
    return {
        "inputs": [str(d) for d in dirs],
        "num_nodes": first.summary.get("num_nodes"),
        "duration_s": first.summary.get("duration_emulated_s"),
        "network": sorted({str(r.config.get("network", {}).get("name", "?")) for r in runs}),
        "stragglers": sorted({len(r.summary.get("stragglers", [])) for r in runs}),
        "targets": [f"{t:g}" for t in targets],
        "reference": stats[0]["label"],
        "std": "population standard deviation over seeds (ddof=0)",
        "lagged": any(row["lagged"] for row in stats),
        "warnings": warnings,
        "groups": stats,
    }


# ---------------------------------------------------------------- rendering


def _fmt(stats: dict, std: bool, digits: int = 1, scale: float = 1.0, unit: str = "") -> str:
    """`mean` or, with several seeds, `mean ± std`, scaled and rounded."""
    if stats["mean"] is None:
        return "n/a"
    mean = f"{stats['mean'] * scale:.{digits}f}"
    if not std or stats["std"] is None:
        return mean + unit
    return f"{mean} ± {stats['std'] * scale:.{digits}f}{unit}"


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    targets = result["targets"]
    header = [
        "label",
        "runs (seeds)",
        *(f"time to {t} (s)" for t in targets),
        "final mean acc.",
        "final worst acc.",
        "final mean test loss",
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
            s = g["time_to_accuracy"][t]
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
                f(g["final_mean_accuracy"], 1, 100, "%"),
                f(g["final_worst_accuracy"], 1, 100, "%"),
                f(g["final_mean_loss"], 4),
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
    header, rows = table_rows(result)

    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def render_markdown(result: dict) -> str:
    lagged = " **LAGGED: timings of the lagged runs are not faithful.**" if result["lagged"] else ""
    lines = [
        "# Comparison of runs",
        "",
        f"- inputs: {', '.join(f'`{d}`' for d in result['inputs'])}",
        f"- {result['num_nodes']} nodes, {result['duration_s']:g} emulated seconds, network "
        f"{'/'.join(result['network'])}, "
        f"{'/'.join(str(s) for s in result['stragglers'])} stragglers",
        f"- accuracy targets on the mean test accuracy over nodes: {', '.join(result['targets'])}",
        "",
        f"Speed-up = time to the target of the first row (`{result['reference']}`, the "
        "reference) / time of this row: 2 means this row reached the target twice as fast, "
        "0.5 twice as slow; blank when either did not reach it. With several seeds a cell is "
        "mean ± std over seeds (population std, ddof=0), a time to target is given only if every "
        "seed reached it (else how many did), and the speed-up is the ratio of the means. Times "
        "are emulated seconds, recomputed from each run's accuracy curve (linear between "
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
    return "\n".join(lines) + "\n"


def render_csv(result: dict) -> str:
    targets = result["targets"]
    cols = ["label", "runs", "seeds"]
    for t in targets:
        cols += [f"tta_{t}_mean_s", f"tta_{t}_std_s", f"tta_{t}_seeds_reached"]
    measures = (
        "final_mean_accuracy",
        "final_worst_accuracy",
        "final_mean_loss",
        "bytes_sent_mb",
        "bytes_dropped_mb",
        "tdf",
        "late_deliveries_pct",
    )
    for m in measures:
        cols += [f"{m}_mean", f"{m}_std"]
    cols += ["lagged_runs", *(f"speedup_{t}" for t in targets)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(cols)
    for g in result["groups"]:
        row = [g["label"], g["runs"], " ".join(str(s) for s in g["seeds"])]
        for t in targets:
            s = g["time_to_accuracy"][t]
            row += [s["mean"], s["std"], s["reached"]]
        for m in measures:
            row += [g[m]["mean"], g[m]["std"]]
        row += [g["lagged_runs"], *(g["speedup"][t] for t in targets)]
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def _title(result: dict, what: str) -> str:
    lag = " — LAGGED — not faithful" if result["lagged"] else ""
    stragglers = "/".join(str(s) for s in result["stragglers"])
    return f"{what}: {result['num_nodes']} nodes, {stragglers} stragglers{lag}"


def _legend(g: dict) -> str:
    return g["label"] + (f" ({g['runs']} seeds)" if g["runs"] > 1 else "")


def plot_accuracy(result: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, g in enumerate(result["groups"]):
        c, color = g["curve"], f"C{i % 10}"
        ax.fill_between(c["t"], c["min"], c["max"], color=color, alpha=0.15, lw=0)
        ax.plot(c["t"], c["mean"], color=color, lw=2, label=_legend(g))
    for t in result["targets"]:
        ax.axhline(float(t), color="grey", lw=0.7, ls=":")
    ax.set_title(_title(result, "mean over nodes, band min–max"), fontsize=10)
    ax.set_xlabel("emulated time (s)")
    _finish(fig, ax, path)


def plot_bytes(result: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, g in enumerate(result["groups"]):
        c = g["curve"]
        ax.plot(c["mb"], c["mean"], color=f"C{i % 10}", lw=2, marker=".", label=_legend(g))
    for t in result["targets"]:
        ax.axhline(float(t), color="grey", lw=0.7, ls=":")
    ax.set_title(_title(result, "mean over nodes vs traffic"), fontsize=10)
    ax.set_xlabel("bytes sent by all nodes so far (MB)")
    _finish(fig, ax, path)


def _finish(fig, ax, path: Path) -> None:
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def default_out(dirs: list[Path]) -> Path:
    """The first input if it is a sweep dir, else ./comparison."""
    first = dirs[0]
    return first if not (first / "summary.json").exists() else Path.cwd() / "comparison"


def write_comparison(dirs: list[Path], out: Path | None = None) -> dict:
    """Compare the runs under `dirs` and write the four outputs into `out`; returns the data."""
    result = compare(dirs)
    out = out or default_out(dirs)
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy(result, out / "comparison_accuracy.png")
    plot_bytes(result, out / "comparison_bytes.png")
    write_text_atomic(out / "comparison.md", render_markdown(result))
    write_text_atomic(out / "comparison.csv", render_csv(result))
    write_json_atomic(out / "comparison.json", _finite(result))
    result["out"] = str(out)
    return result


def _finite(x):
    """JSON has no NaN: any that slipped in becomes null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def run_and_print(dirs: list[Path], out: Path | None = None) -> dict:
    result = write_comparison(dirs, out)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(markdown_table(result))
    print(f"comparison written to {result['out']}/comparison.{{md,csv,json}} and *.png", flush=True)
    return result


# ---------------------------------------------------------------- CLI and hydra callback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launcher.report",
        description="Compare runs: run dirs (with summary.json) or sweep dirs (their job dirs).",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output dir; default: the first DIR if it is a sweep dir, else ./comparison",
    )
    args = parser.parse_args(argv)
    try:
        run_and_print(args.dirs, args.out)
    except CompareError as err:
        print(f"compare: error: {err}", file=sys.stderr)
        return 2
    return 0


class CompareCallback(Callback):
    """Writes the comparison into the sweep dir when a multirun ends; never raises, so a failed
    comparison cannot hide the results of the runs."""

    def on_multirun_end(self, config, **kwargs) -> None:
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            run_and_print([sweep_dir], sweep_dir)
        except Exception as err:  # noqa: BLE001 - reported, never raised
            print(f"compare: comparison not written: {err}", file=sys.stderr, flush=True)
