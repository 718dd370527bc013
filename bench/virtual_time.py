"""Virtual time against dilated wall time, side by side in one run: for the default experiment,
LASGD and AD-PSGD (atomic) at 60 nodes, GN-LeNet at 60 and the default at 500, the wall seconds
an emulated second takes, the efficiency against the bare-step limit (the compute limit of a
bare step timed alone, over the wall seconds per emulated second), the start-up, and whether
two runs of one config write the same models and records; what one advance of the keeper costs
and how many a round of each algorithm needs; a step's CPU alone and inside a run; the whole
default run (what `make emulate N=60` runs) in virtual time."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.common import (
    STEP_TIME,
    Sizes,
    bare_step_s,
    default_data,
    for_other_data,
    launcher,
    save,
)
from node.files import read_jsonl

TARGETS = {"default": 0.9, "lasgd": 0.8, "adpsgd_atomic": 0.8, "gn_lenet": 0.85}
WALL_FIELDS = {"cpu_per_step", "gate_wait_s", "wall_s"}  # what a round took on the wall clock


def signature(run: Path) -> str:
    """One hash of every kept model and every round record (wall-clock fields aside)."""
    digest = hashlib.sha256()
    for path in sorted((run / "snapshots" / "kept").glob("n*_t*.npy")):
        digest.update(path.name.encode())
        digest.update(np.load(path, allow_pickle=False).tobytes())
    for path in sorted((run / "nodes").glob("*.jsonl")):
        for record in read_jsonl(path):
            kept = {k: v for k, v in record.items() if k not in WALL_FIELDS}
            digest.update(json.dumps(kept, sort_keys=True).encode())
    return digest.hexdigest()


def _facts(s: dict, nodes: int, bare: float, run: Path) -> dict:
    """What the table reports of one run."""
    cores = len(os.sched_getaffinity(0))
    limit = nodes * bare / (cores * STEP_TIME)
    per_s = (s["training_wall_seconds"] or 0) / s["duration_emulated_s"] or None
    time_ = s.get("time") or {}
    keeper = time_.get("keeper") or {}
    steps = s.get("local_steps") or 0
    return {
        "clock": s.get("clock_mode", "wall"),
        "status": s["status"],
        "tdf": s["tdf"],
        "wall_per_emulated_s": per_s,
        "compute_limit": limit,
        "efficiency": limit / per_s if per_s else None,
        "start_seconds": s.get("start_seconds"),
        "ready_seconds": s["ready_seconds"],
        "wall_seconds": s["wall_seconds"],
        "in_run_step_ms": 1000 * s["compute_cpu_per_step_s"] if steps else None,
        "lagged": s["lag"]["lagged"],
        "final_mean_accuracy": s["final_mean_accuracy"],
        "keeper": keeper,
        "signature": signature(run),
    }


def _pair(sizes, tmp: Path, tag: str, nodes: int, bare: float, data_sizes, *args) -> dict:
    """The case in virtual time twice (the determinism check) and on the wall clock at the
    factor tdf=auto chooses, then once more at that factor (its own check)."""
    common = (f"num_nodes={nodes}", "eval.keep_snapshots=true", *args)
    out = {}
    for name, extra in (("virtual", ("clock=virtual",)), ("virtual_again", ("clock=virtual",))):
        folder = tmp / f"{tag}-{name}"
        out[name] = _facts(launcher(folder, data_sizes, *common, *extra), nodes, bare, folder)
    wall_args = ["clock=wall", f"tdf={sizes.tdf}"]
    if nodes > 100:  # calibrating 500 nodes takes most of an hour: 3x the bare-step limit
        wall_args = ["clock=wall", f"tdf={3 * out['virtual']['compute_limit']:.2f}"]
    folder = tmp / f"{tag}-wall"
    out["wall"] = _facts(launcher(folder, data_sizes, *common, *wall_args), nodes, bare, folder)
    factor = out["wall"]["tdf"]
    folder = tmp / f"{tag}-wall_again"
    again = launcher(folder, data_sizes, *common, "clock=wall", f"tdf={factor}")
    out["wall_again"] = _facts(again, nodes, bare, folder)
    for mode in ("virtual", "wall"):
        out[mode]["repeats_bit_for_bit"] = (
            out[mode]["signature"] == out[f"{mode}_again"]["signature"]
        )
    return out


def _advances_per_round(sizes: Sizes, tmp: Path, nodes: int) -> dict:
    """Every built-in algorithm at `nodes` nodes in virtual time: phases (advances of the
    clock) per round, ADVANCEs per node per round, wall seconds per emulated second."""
    from node.algorithms import builtin_algorithms

    seconds, out = sizes.virtual_round_seconds, {}
    algorithms = builtin_algorithms()
    for name in sizes.virtual_round_algorithms or sorted(algorithms):
        cls = algorithms[name]
        args = [f"num_nodes={nodes}", f"algorithm={name}", f"duration={seconds}"]
        args.append(f"eval.interval={seconds}")
        if sizes.small_degree and "degree" in cls.config_class.__dataclass_fields__:
            args.append(f"algorithm.degree={sizes.small_degree}")
        s = launcher(tmp / f"round-{name}", sizes, *args)
        keeper = s["time"]["keeper"]
        rounds = seconds / (128 * STEP_TIME)  # emulated rounds (H = 128 steps of 4.85 ms)
        out[name] = {
            "phases_per_round": keeper["phases"] / rounds,
            "advances_per_node_per_round": keeper["advances"] / nodes / rounds,
            "syncs_per_round": keeper["syncs"] / rounds,
            "wall_per_emulated_s": s["time"]["wall_per_emulated_s"],
            "status": s["status"],
        }
    return out


def _cases(sizes: Sizes, tmp: Path) -> dict:
    """case -> (nodes, the model's bare step alone, the sizes to run it with, its overrides)"""
    nodes, seconds, step_s = sizes.nodes, sizes.efficiency_seconds, sizes.virtual_step_seconds
    cnn = bare_step_s("cnn1d", default_data(sizes), nodes, sizes.bare_step_seconds)
    short = (f"duration={seconds}", f"eval.interval={seconds / 3}")
    per_step = (f"duration={step_s}", f"eval.interval={step_s}")
    cases = {
        "default_60": (nodes, cnn, sizes, short),
        "lasgd_60": (nodes, cnn, sizes, ("algorithm=lasgd", *per_step)),
        "adpsgd_atomic_60": (nodes, cnn, sizes, ("algorithm=adpsgd_atomic", *per_step)),
    }
    if "gn_lenet_60" in sizes.virtual_cases:
        from bench.data_files import write_cifar10

        test = min(1000, sizes.cifar_per_batch)  # the efficiency does not depend on it
        write_cifar10(tmp / "cifar", per_batch=sizes.cifar_per_batch, test=test)
        data = {"name": "cifar10", "root": str(tmp / "cifar"), "partition": "kshard"}
        data |= {"partition_seed": 1234, "download": False}
        lenet = bare_step_s("gn_lenet", data, sizes.cifar_nodes, sizes.bare_step_seconds)
        cases["gn_lenet_60"] = (
            sizes.cifar_nodes,
            lenet,
            for_other_data(sizes),
            (
                "+experiment=paper_cifar10",
                f"dataset.root={tmp / 'cifar'}",
                "dataset.download=false",
                f"duration={sizes.cifar_seconds}",
                f"eval.interval={sizes.cifar_seconds}",
                "compute.calibration_rounds=1",
            ),
        )
    scale = (f"duration={sizes.scale_seconds}", f"eval.interval={sizes.scale_seconds}")
    scale += ("transport.bind=ipc://", "launch.start_timeout=600")
    cases["default_500"] = (sizes.scale_nodes, cnn, sizes, scale)
    return {case: cases[case] for case in sizes.virtual_cases}


def bench_virtual(sizes: Sizes, results: Path) -> None:
    table, report = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = _cases(sizes, tmp)
        for case, (nodes, bare, case_sizes, args) in cases.items():
            table[case] = _pair(case_sizes, tmp, case, nodes, bare, case_sizes, *args)
        report["advances_per_round_60"] = _advances_per_round(sizes, tmp, sizes.nodes)
        full = [f"num_nodes={sizes.nodes}"]
        if sizes.default_run_seconds:
            full.append(f"duration={sizes.default_run_seconds}")
        default = launcher(tmp / "default-full", sizes, *full)
    for case in ("default_60", "default_500"):
        if case not in table:
            continue
        keeper = table[case]["virtual"]["keeper"]
        report[f"advance_cost_{case}"] = {
            "keeper_cpu_us_per_phase": 1e6 * keeper["keeper_cpu_s"] / max(1, keeper["phases"]),
            "keeper_cpu_us_per_node_advance": 1e6
            * keeper["keeper_cpu_s"]
            / max(1, keeper["advances"] + keeper["reports"]),
        }
    report["step_ms"] = {
        **{f"{case}_bare_alone": cases[case][1] * 1000 for case in cases},
        **{
            f"{case}_{mode}_in_run": table[case][mode]["in_run_step_ms"]
            for case in table
            for mode in ("virtual", "wall")
        },
    }
    report["default_run"] = {
        "nodes": sizes.nodes,
        "duration_emulated_s": default["duration_emulated_s"],
        "wall_seconds": default["wall_seconds"],
        "start_seconds": default["start_seconds"],
        "training_wall_seconds": default["training_wall_seconds"],
        "final_mean_accuracy": default["final_mean_accuracy"],
        "status": default["status"],
    }
    met = {
        case: (table[f"{case}_60"]["virtual"]["efficiency"] or 0) >= target
        for case, target in TARGETS.items()
        if f"{case}_60" in table
    }
    if "default_500" in table:
        met["default_500_runs"] = table["default_500"]["virtual"]["status"] == "ok"
    repeats = [row["virtual"]["repeats_bit_for_bit"] for row in table.values()]
    met["repeats_bit_for_bit"] = all(repeats)
    save(
        results,
        "virtual",
        {
            "nodes": sizes.nodes,
            "table": table,
            **report,
            "targets": {**TARGETS, "default_500": "runs", "repeats": "bit for bit"},
            "targets_met": met,
            "meets_target": all(met.values()),
        },
    )
