"""What a node costs in memory and start-up, at 60 nodes and at 500, and what a CIFAR-10 node
holds: its shard, not the training set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, STEP_TIME, Sizes, bare_step_s, default_data, launcher, save


def bench_memory(sizes: Sizes, results: Path) -> None:
    """The default experiment's nodes: memory at ready and while training, and start-up time
    (in virtual time, the default: no calibration)."""
    with tempfile.TemporaryDirectory() as tmp:
        s = launcher(
            Path(tmp) / "run",
            sizes,
            f"num_nodes={sizes.nodes}",
            f"duration={sizes.run_seconds}",
            f"eval.interval={sizes.run_seconds}",
        )
    mem = s["memory"]
    save(
        results,
        "memory",
        {
            "nodes": sizes.nodes,
            "ready_seconds": s["ready_seconds"],
            "pss_mib_per_node_at_ready": mem["ready_pss_mib_mean"],
            "pss_mib_per_node_training_mean": mem["training_pss_mib_mean"],
            "pss_mib_per_node_training_max": mem["training_pss_mib_max"],
            "pss_mib_total_training": mem["training_pss_mib_total"],
            "clock": s["clock_mode"],
            "targets": {"pss_mib_per_node": 100, "ready_seconds": 10},
            "meets_target": (mem["training_pss_mib_max"] or 1e9) <= 100 and s["ready_seconds"] < 10,
            "run_status": s["status"],
        },
    )


_SHARD_PROBE = """
import json, sys
import numpy as np, psutil
from node.spec import DataSpec
from node.data import cifar10, task
root, what = sys.argv[1], sys.argv[2]
spec = DataSpec(name="cifar10", root=root, partition="kshard", partition_seed=1234)
before = psutil.Process().memory_info().rss
if what == "shard":
    x, _ = task("cifar10").train_shard(spec, 0, 60)
else:  # what a node would hold if it loaded everything and kept its indices
    x = cifar10.to_inputs(np.load(f"{root}/{cifar10.CACHE}/train_x.npy"))
print(json.dumps({"rss_mib": (psutil.Process().memory_info().rss - before) / 2**20,
                  "images": len(x)}))
"""


def bench_cifar_shard(sizes: Sizes, results: Path) -> None:
    """RSS a node gains loading its kshard shard of 60, against loading the whole training set,
    side by side on full-size CIFAR-10 files written in the real format (random pixels)."""
    from bench.data_files import write_cifar10
    from node.data import task
    from node.spec import DataSpec

    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(Path(tmp), per_batch=sizes.cifar_per_batch, test=sizes.cifar_per_batch)
        spec = DataSpec(name="cifar10", root=tmp, partition="kshard", partition_seed=1234)
        task("cifar10").prepare(spec)
        probes = {}
        for what in ("shard", "whole"):
            out = subprocess.run(
                [sys.executable, "-c", _SHARD_PROBE, tmp, what],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            probes[what] = json.loads(out.stdout)
    save(
        results,
        "cifar_shard",
        {
            "nodes": 60,
            "shard_images": probes["shard"]["images"],
            "shard_rss_mib": round(probes["shard"]["rss_mib"], 1),
            "whole_set_images": probes["whole"]["images"],
            "whole_set_rss_mib": round(probes["whole"]["rss_mib"], 1),
            "ratio_whole_over_shard": round(
                probes["whole"]["rss_mib"] / probes["shard"]["rss_mib"], 1
            ),
            "targets": {"shard_rss_mib": 50},
            "meets_target": probes["shard"]["rss_mib"] <= 50,
        },
    )


def _efficiency(nodes: int, bare: float, summary: dict) -> float | None:
    """The compute limit of the bare step over the wall seconds an emulated second took."""
    per_s = summary["time"]["wall_per_emulated_s"]
    return nodes * bare / (len(os.sched_getaffinity(0)) * STEP_TIME) / per_s if per_s else None


MIB_PER_NODE_BUDGET = 35  # PSS per node at 500 nodes (21 measured), evaluators included


def _available_mib() -> float:
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) / 1024


def bench_scale(sizes: Sizes, results: Path) -> None:
    """Many nodes on one host (DivShare, CNN1D, Unix sockets): all ready quickly, within a
    memory budget per node, no lag, and the run completes."""
    seconds = sizes.scale_seconds
    # Measured here: a full mesh of 500 nodes needed more than 24 GiB (nodes grow with their
    # peers); with transport.max_connections they need about 21 MiB each. The run still takes
    # only as many nodes as fit, and says so.
    fits = int(0.8 * _available_mib() / MIB_PER_NODE_BUDGET)
    nodes = min(sizes.scale_nodes, fits)
    # In virtual time (the default): no calibration, no factor to guess. (On the wall clock
    # tdf=auto at 500 nodes spent most of the benchmark in its trials, and three times the
    # compute limit of a bare step lagged by 183 ms at 472 nodes.)
    bare = bare_step_s("cnn1d", default_data(sizes), nodes, sizes.bare_step_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        s = launcher(
            Path(tmp) / "run",
            sizes,
            f"num_nodes={nodes}",
            f"duration={seconds}",
            f"eval.interval={seconds}",
            "transport.bind=ipc://",
            "launch.start_timeout=600",
        )
    mem = s["memory"]
    pss = mem["training_pss_mib_max"]
    save(
        results,
        "scale",
        {
            "nodes_asked": sizes.scale_nodes,
            "nodes": nodes,
            "nodes_that_fit_in_memory": fits,
            "duration_emulated_s": seconds,
            "ready_seconds": s["ready_seconds"],
            "pss_mib_per_node_training_mean": mem["training_pss_mib_mean"],
            "pss_mib_per_node_training_max": pss,
            "clock": s["clock_mode"],
            "wall_per_emulated_s": s["time"]["wall_per_emulated_s"],
            "efficiency": _efficiency(nodes, bare, s),
            "bare_step_ms": bare * 1000,
            "connections_opened": s["totals"]["connections_opened"],
            "connections_closed": s["totals"]["connections_closed"],
            "lagged": s["lag"]["lagged"],
            "max_behind_ms": round(s["lag"]["max_behind_s"] * 1000, 1),
            "wall_seconds": s["wall_seconds"],
            "run_status": s["status"],
            "targets": {"ready_seconds": 30, "pss_mib_per_node": 30},
            "meets_target": s["status"] == "ok"
            and nodes == sizes.scale_nodes
            and s["ready_seconds"] < 30
            and (pss or 1e9) <= 30
            and not s["lag"]["lagged"],
        },
    )
