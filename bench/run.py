"""Benchmarks: shaper accuracy, memory and start-up, CIFAR-10 shard memory, emulation
efficiency, dilation invariance.

    python -m bench.run [--tiny] [--results DIR] [shaper] [memory] [cifar_shard] [efficiency]
                        [dilation]                                             (default: all)

Each writes <DIR>/<name>.json (default bench/results/) with the machine, the command and the
figures, and <DIR>/SUMMARY.md is regenerated from whatever results exist there. `--tiny` runs
every benchmark at a size that only proves it still works (the tests do), not its figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from node.files import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs: the real figures, or just enough to prove it works."""

    nodes: int = 60
    shaper_rates_mbps: tuple[float, ...] = (1.0, 10.0, 100.0)
    shaper_seconds: float = 4.0
    burners: int = 4
    run_seconds: float = 4.0  # emulated, memory benchmark
    cifar_per_batch: int = 10_000
    bare_step_seconds: float = 5.0
    efficiency_seconds: float = 3.0  # emulated, un-paced
    dilation_seconds: float = 10.0
    dilation_eval: float = 1.0
    extra: tuple[str, ...] = ()  # overrides every launched run gets


FULL = Sizes()
TINY = Sizes(
    nodes=4,
    shaper_rates_mbps=(10.0,),
    shaper_seconds=0.5,
    burners=1,
    run_seconds=1.0,
    cifar_per_batch=100,
    bare_step_seconds=0.5,
    efficiency_seconds=0.5,
    dilation_seconds=2.0,
    dilation_eval=1.0,
    extra=(
        "algorithm.degree=2",
        "dataset.num_samples=3000",
        "compute.calibration_margin=4",
        "eval.interval=0.5",
    ),
)


def machine() -> dict:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def save(results: Path, name: str, figures: dict) -> None:
    record = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
        "machine": machine(),
        **figures,
    }
    write_json_atomic(results / f"{name}.json", record)
    print(json.dumps(figures, indent=2), flush=True)


def launcher(run_dir: Path, sizes: Sizes, *overrides: str, timeout: float = 1800) -> dict:
    """The real CLI in a subprocess (its data under bench/'s data root); its summary.json."""
    args = [sys.executable, "-m", "launcher", f"hydra.run.dir={run_dir}", *sizes.extra, *overrides]
    code = subprocess.run(args, cwd=ROOT, timeout=timeout, check=False).returncode
    if not (run_dir / "summary.json").is_file():
        raise SystemExit(f"the run wrote no summary (exit code {code}): {' '.join(args)}")
    return json.loads((run_dir / "summary.json").read_text())


# ---- 1. shaper accuracy under CPU load ---------------------------------------------------------
def _burn(stop) -> None:
    """A training loop flat out: the CPU load the shaper must hold its rate under."""
    import torch
    import torch.nn.functional as F

    from node.models import build_model
    from node.torch_setup import configure_torch

    configure_torch(1)
    model = build_model("cnn1d", 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 1, 40), torch.randint(0, 10, (8,))
    while not stop.is_set():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def _link(up_mbps: float, down_mbps: float):
    from transport import LinkSpec

    return LinkSpec(up_mbps=up_mbps, down_mbps=down_mbps, latency_ms=1.0)


def _shaped_sender(endpoint: str, t0: float, rate_mbps: float, count: int, size: int) -> None:
    from transport import EmulatedClock, Message, ZmqTransport

    tx = ZmqTransport(0, _link(rate_mbps, rate_mbps), frozenset({"model"}), threading.Event())
    try:
        tx.bind()
        tx.connect({1: endpoint})
        tx.start(EmulatedClock(t0, 1.0))
        payload = np.ones(size // 4, dtype=np.float32)
        tx.send([Message("model", 0, 1, i, 0, (payload,)) for i in range(count)])
        deadline = time.monotonic() + 120
        while tx.stats.sent_messages < count and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        tx.close()


def shaper_rate(rate_mbps: float, seconds: float = 4.0, size: int = 32_000) -> dict:
    from transport import EmulatedClock, ZmqTransport

    count = max(20, int(seconds * rate_mbps * 1e6 / (size * 8)))
    clock = EmulatedClock(time.monotonic() + 0.5, 1.0)
    # The downlink is 10x faster: the sender's uplink alone sets the pace.
    rx = ZmqTransport(1, _link(rate_mbps, rate_mbps * 10), frozenset({"model"}), threading.Event())
    proc = None
    try:
        endpoint = rx.bind()
        rx.connect({0: "tcp://127.0.0.1:1"})  # a source it accepts; never sent to
        rx.start(clock)
        spawn = mp.get_context("spawn")
        args = (endpoint, clock.t0, rate_mbps, count, size)
        proc = spawn.Process(target=_shaped_sender, args=args)
        proc.start()
        times, deadline = [], time.monotonic() + seconds * 3 + 60
        while len(times) < count and time.monotonic() < deadline:
            if rx.receive(until=clock.now() + 1.0) is not None:
                times.append(clock.now())
        proc.join(30)
    finally:
        rx.close()
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)
    stats = rx.stats
    rate = rate_mbps * 1e6
    per_message = stats.total_delivered / max(1, len(times))
    measured = (len(times) - 1) * per_message * 8 / (times[-1] - times[0])
    return {
        "configured_mbps": rate_mbps,
        "measured_mbps": measured / 1e6,
        "messages": len(times),
        "error": measured / rate - 1,
    }


def bench_shaper(sizes: Sizes, results: Path) -> None:
    stop = mp.get_context("fork").Event()
    burners = [
        mp.get_context("fork").Process(target=_burn, args=(stop,)) for _ in range(sizes.burners)
    ]
    for b in burners:
        b.start()
    try:
        time.sleep(2.0)
        rates = [shaper_rate(r, sizes.shaper_seconds) for r in sizes.shaper_rates_mbps]
    finally:
        stop.set()
        for b in burners:
            b.join(10)
    worst = max(abs(r["error"]) for r in rates)
    save(
        results,
        "shaper",
        {
            "load": f"{sizes.burners} processes training CNN1D flat out on the same cores",
            "rates": rates,
            "worst_abs_error": worst,
            "target": 0.01,
            "meets_target": worst <= 0.01,
        },
    )


# ---- 2. memory and start-up at N=60 -------------------------------------------------------------
def bench_memory(sizes: Sizes, results: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = launcher(
            Path(tmp) / "run", sizes, f"num_nodes={sizes.nodes}", f"duration={sizes.run_seconds}"
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
            "targets": {"pss_mib_per_node": 100, "ready_seconds": 10},
            "meets_target": (mem["training_pss_mib_max"] or 1e9) <= 100 and s["ready_seconds"] < 10,
            "run_status": s["status"],
        },
    )


# ---- 2b. a CIFAR-10 node holds its shard, not the training set ---------------------------------
_SHARD_PROBE = """
import json, sys
import numpy as np, psutil
from node.config import DataSpec
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
    from node.config import DataSpec
    from node.data import task

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


# ---- 3. emulation efficiency --------------------------------------------------------------------
def bare_steps_per_second(sizes: Sizes, seconds: float) -> float:
    """One process alone, CNN1D on node 0's shard of the default MNIST-1D run: steps per s."""
    import torch
    import torch.nn.functional as F

    from node.config import DataSpec
    from node.data import task
    from node.models import build_model
    from node.torch_setup import configure_torch

    configure_torch(1, "cnn1d")
    root = str(ROOT / "data")  # the launcher's default data_root, as the runs below use
    spec = DataSpec(name="mnist1d", root=root, partition="kshard", partition_seed=1234)
    task("mnist1d").prepare(spec)
    x, y = task("mnist1d").train_shard(spec, 0, sizes.nodes)
    model = build_model("cnn1d", 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        idx = torch.randint(0, len(y), (8,), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        loss.item()
        count += 1
    return count / (time.perf_counter() - start)


def bench_efficiency(sizes: Sizes, results: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    bare = bare_steps_per_second(sizes, sizes.bare_step_seconds)
    with tempfile.TemporaryDirectory() as tmp:
        s = launcher(
            Path(tmp) / "run",
            sizes,
            f"num_nodes={sizes.nodes}",
            f"duration={sizes.efficiency_seconds}",
            "compute.pace=false",
            "tdf=1",
        )
    aggregate = s["local_steps"] / s["training_wall_seconds"]
    ratio = aggregate / (bare * cores)
    save(
        results,
        "efficiency",
        {
            "nodes": sizes.nodes,
            "cores": cores,
            "bare_steps_per_s_one_core": bare,
            "aggregate_steps_per_s": aggregate,
            "local_steps": s["local_steps"],
            "training_wall_seconds": s["training_wall_seconds"],
            "bytes_sent": s["totals"]["bytes_sent"],
            "ratio": ratio,
            "target": 0.85,
            "meets_target": ratio >= 0.85,
            "run_status": s["status"],
        },
    )


# ---- 4. time-dilation invariance ---------------------------------------------------------------
def bench_dilation(sizes: Sizes, results: Path) -> None:
    duration = sizes.dilation_seconds
    with tempfile.TemporaryDirectory() as tmp:
        common = (
            f"num_nodes={sizes.nodes}",
            f"duration={duration}",
            f"eval.interval={sizes.dilation_eval}",
        )
        first = launcher(Path(tmp) / "a", sizes, *common)
        a = first["tdf"]
        second = launcher(Path(tmp) / "b", sizes, *common, f"tdf={2 * a}")
    runs = []
    for s in (first, second):
        runs.append(
            {
                "tdf": s["tdf"],
                "time_to_accuracy": s["time_to_accuracy"],
                "final_mean_accuracy": s["final_mean_accuracy"],
                "lagged": s["lag"]["lagged"],
                "max_behind_s": s["lag"]["max_behind_s"],
                "curve_mean": [round(p["mean"], 4) for p in s["curve"]],
            }
        )
    diffs = {}
    for target, t_a in first["time_to_accuracy"].items():
        t_b = second["time_to_accuracy"][target]
        diffs[target] = None if t_a is None or t_b is None else abs(t_b - t_a) / t_a
    reached = [d for d in diffs.values() if d is not None]
    curve_gap = max(
        abs(p["mean"] - q["mean"]) for p, q in zip(first["curve"], second["curve"], strict=False)
    )
    save(
        results,
        "dilation",
        {
            "duration_emulated_s": duration,
            "runs": runs,
            "max_mean_accuracy_gap_on_curve": curve_gap,
            "relative_difference": diffs,
            "final_accuracy_difference": abs(
                first["final_mean_accuracy"] - second["final_mean_accuracy"]
            ),
            "target": 0.10,
            "meets_target": bool(reached) and max(reached) <= 0.10,
        },
    )


def write_summary(results: Path) -> None:
    lines = ["# Benchmark results", "", "Regenerated by `make bench` from the JSON files here.", ""]
    for path in sorted(results.glob("*.json")):
        r = json.loads(path.read_text())
        verdict = "meets target" if r.get("meets_target") else "MISSES target"
        lines += [
            f"## {r['benchmark']} ({verdict})",
            "",
            f"`{r['command']}` on {r['machine']['host']} "
            f"({r['machine']['cores_available']} cores), {r['date']}",
            "",
            "```json",
            json.dumps(
                {
                    k: v
                    for k, v in r.items()
                    if k not in ("benchmark", "command", "machine", "date")
                },
                indent=1,
            ),
            "```",
            "",
        ]
    write_text_atomic(results / "SUMMARY.md", "\n".join(lines))


BENCHES = {
    "shaper": bench_shaper,
    "memory": bench_memory,
    "cifar_shard": bench_cifar_shard,
    "efficiency": bench_efficiency,
    "dilation": bench_dilation,
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {list(BENCHES)}")
    parser.add_argument("--tiny", action="store_true", help="smallest sizes: proves it runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    sizes = TINY if args.tiny else FULL
    for name in args.names or list(BENCHES):
        print(f"== {name}", flush=True)
        BENCHES[name](sizes, args.results)
    write_summary(args.results)


if __name__ == "__main__":
    main(sys.argv[1:])
