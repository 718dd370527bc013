"""How cheaply and how faithfully dilated wall time emulates (`clock=wall`): the factor chosen
against the compute limit (efficiency), the same curves at factor a, 2a, with per-step pacing
and in virtual time (fidelity), and whether any shipped experiment lags at the factor
`tdf=auto` chooses. Virtual time's own figures are bench/virtual_time.py's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import (
    STEP_TIME,
    Sizes,
    bare_step_s,
    default_data,
    for_other_data,
    launcher,
    save,
)

TARGET_EFFICIENCY = 0.75


def _run_facts(s: dict) -> dict:
    """What a benchmark reports of one run's summary."""
    totals = s["totals"]
    delivered = totals.get("messages_delivered") or 0
    metric = s.get("metric", "accuracy")
    return {
        "clock": s.get("clock_mode", "wall"),
        "tdf": s["tdf"],
        "lagged": s["lag"]["lagged"],
        "max_behind_ms": round(s["lag"]["max_behind_s"] * 1000, 1),
        "late_delivery_share": totals.get("late_deliveries", 0) / delivered if delivered else 0,
        "final_mean_accuracy": s["final_mean_accuracy"],
        "metric": metric,
        "time_to_target": s[f"time_to_{metric.lower()}"],
        "wall_seconds": s["wall_seconds"],
        "node_cpu_per_emulated_s": s.get("node_cpu_per_emulated_s"),
        "status": s["status"],
    }


def _efficiency(sizes, results, name, model, data_spec, nodes, step_time, *overrides) -> None:
    """The bare step timed before and after the run, side by side; the run at tdf=auto."""
    cores = len(os.sched_getaffinity(0))
    before = bare_step_s(model, data_spec, nodes, sizes.bare_step_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        wall = ("clock=wall", f"num_nodes={nodes}", f"tdf={sizes.tdf}")
        s = launcher(Path(tmp) / "run", sizes, *wall, *overrides)
    after = bare_step_s(model, data_spec, nodes, sizes.bare_step_seconds)
    bare = (before + after) / 2
    limit = nodes * bare / (cores * step_time)
    facts = _run_facts(s)
    efficiency = limit / s["tdf"]
    save(
        results,
        name,
        {
            "nodes": nodes,
            "cores": cores,
            "model": model,
            "bare_step_ms": {"before": before * 1000, "after": after * 1000},
            "step_time_emulated_s": step_time,
            "compute_limit_tdf": limit,
            "efficiency": efficiency,
            "calibration": s["calibration"],
            **facts,
            "target": TARGET_EFFICIENCY,
            "meets_target": efficiency >= TARGET_EFFICIENCY
            and not facts["lagged"]
            and facts["late_delivery_share"] < 0.01,
        },
    )


def bench_efficiency(sizes: Sizes, results: Path) -> None:
    """The default experiment (CNN1D, DivShare, stragglers), a short run."""
    data = default_data(sizes)
    seconds = sizes.efficiency_seconds
    overrides = (f"duration={seconds}", f"eval.interval={seconds / 3}")
    _efficiency(sizes, results, "efficiency", "cnn1d", data, sizes.nodes, STEP_TIME, *overrides)


def bench_efficiency_cifar(sizes: Sizes, results: Path) -> None:
    """paper_cifar10's GN-LeNet on full-size CIFAR-10 files in the real format, a short run."""
    from bench.data_files import write_cifar10

    with tempfile.TemporaryDirectory() as tmp:
        # Training files at full size (what a node loads and steps on); a test set of 1,000:
        # the factor does not depend on it, and 60 x 2 evaluations of 10,000 images took most
        # of this benchmark's 19 minutes here (the run itself about 8).
        test = min(1000, sizes.cifar_per_batch)
        write_cifar10(Path(tmp), per_batch=sizes.cifar_per_batch, test=test)
        data = {"name": "cifar10", "root": tmp, "partition": "kshard", "partition_seed": 1234}
        data["download"] = False
        seconds = sizes.cifar_seconds
        _efficiency(
            for_other_data(sizes),
            results,
            "efficiency_cifar",
            "gn_lenet",
            data,
            sizes.cifar_nodes,
            0.00485,
            "+experiment=paper_cifar10",
            f"dataset.root={tmp}",
            "dataset.download=false",
            f"duration={seconds}",
            f"eval.interval={seconds}",
            "compute.calibration_rounds=1",
        )


def _gap(a: dict, b: dict) -> dict:
    """How far run b's curve is from run a's: time to each target and final accuracy."""
    rel = {}
    for target, t_a in a["time_to_target"].items():
        t_b = b["time_to_target"].get(target)
        rel[target] = None if t_a is None or t_b is None else abs(t_b - t_a) / t_a
    reached = [v for v in rel.values() if v is not None]
    final = abs(a["final_mean_accuracy"] - b["final_mean_accuracy"])
    return {
        "time_to_target_relative": rel,
        "final_accuracy_points": round(100 * final, 2),
        "within": bool(reached) and max(reached) <= 0.05 and final <= 0.01,
    }


def bench_fidelity(sizes: Sizes, results: Path) -> None:
    """Each algorithm at the factor a that tdf=auto chooses, at 2a and in virtual time;
    DivShare also with every step paced on its own (the pacing before bursts), at 2a. The
    curves must agree."""
    seconds = sizes.fidelity_seconds
    common = (
        f"num_nodes={sizes.fidelity_nodes}",
        f"duration={seconds}",
        f"eval.interval={seconds / 10}",
        f"eval.targets={sizes.fidelity_targets}",
        "eval.keep_snapshots=false",
    )
    report = {}
    with tempfile.TemporaryDirectory() as tmp:

        def run(algorithm: str, tag: str, *extra: str) -> dict:
            folder = Path(tmp) / f"{algorithm}-{tag}"
            return _run_facts(launcher(folder, sizes, *common, f"algorithm={algorithm}", *extra))

        for algorithm in sizes.fidelity_algorithms:
            runs = {"a": run(algorithm, "a", "clock=wall", f"tdf={sizes.tdf}")}
            a = runs["a"]["tdf"]
            runs["2a"] = run(algorithm, "2a", "clock=wall", f"tdf={2 * a}")
            if algorithm == "divshare":
                # At 2a, not calibrated: per-step pacing's trials judge one step's span, which a
                # scheduler hiccup fills, and chose 17.5 and 42.7 at 16 nodes (a was 4.3), 7
                # of the benchmark's 15 minutes. Its lag is reported like every run's.
                runs["step"] = run(
                    algorithm, "step", "clock=wall", "compute.pacing=step", f"tdf={2 * a}"
                )
            runs["virtual"] = run(algorithm, "virtual", "clock=virtual")
            gaps = {k: _gap(runs["a"], r) for k, r in runs.items() if k != "a"}
            report[algorithm] = {"runs": runs, "against_a": gaps}
    ok = all(g["within"] for r in report.values() for g in r["against_a"].values()) and all(
        not run["lagged"] and run["late_delivery_share"] < 0.01
        for r in report.values()
        for run in r["runs"].values()
    )
    save(
        results,
        "fidelity",
        {
            "nodes": sizes.fidelity_nodes,
            "duration_emulated_s": seconds,
            "algorithms": report,
            "accuracy_targets": sizes.fidelity_targets,
            "targets": {
                "time_to_target_relative": 0.05,
                "final_accuracy_points": 1.0,
                "late_delivery_share": 0.01,
            },
            "meets_target": ok,
        },
    )


def bench_nolag(sizes: Sizes, results: Path) -> None:
    """Every shipped experiment with divshare, swift and adpsgd at tdf=auto, a short run:
    the factor chosen and the largest lag. Not in the default set: about 60 minutes here."""
    from bench.data_files import write_ratings

    seconds = sizes.nolag_seconds
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        # MovieLens at full size (610 users, 9,724 movies, ~100k ratings), random ratings.
        write_ratings(Path(tmp) / "ml", num_users=610, per_user=(20, 311), num_movies=9724)
        for experiment in sizes.nolag_experiments:
            extra = [] if experiment == "default" else [f"+experiment={experiment}"]
            extra += ["clock=wall", f"tdf={sizes.tdf}"]
            if experiment.startswith("paper_"):
                extra += [
                    "compute.step_time=0.00485",
                    "dataset.download=false",
                    f"dataset.root={Path(tmp) / 'ml'}",
                ]
            if sizes.extra:
                extra.append(f"num_nodes={sizes.nodes}")
            for algorithm in sizes.nolag_algorithms:
                s = launcher(
                    Path(tmp) / f"{experiment}-{algorithm}",
                    for_other_data(sizes) if experiment.startswith("paper_") else sizes,
                    *extra,
                    f"algorithm={algorithm}",
                    f"duration={seconds}",
                    f"eval.interval={seconds}",
                )
                report[f"{experiment}/{algorithm}"] = _run_facts(s)
    save(
        results,
        "nolag",
        {
            "duration_emulated_s": seconds,
            "runs": report,
            "largest_lag_ms": max(r["max_behind_ms"] for r in report.values()),
            "meets_target": not any(r["lagged"] for r in report.values()),
        },
    )
