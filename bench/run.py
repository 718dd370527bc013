"""Benchmarks: shaper accuracy, memory and start-up, CIFAR-10 shard memory, emulation
efficiency, dilation invariance.

    python -m bench.run [shaper] [memory] [cifar_shard] [efficiency] [dilation]  (default: all)

Each writes bench/results/<name>.json with the machine, the command and the figures, and
bench/results/SUMMARY.md is regenerated from whatever results exist.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def save(name: str, figures: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
        "machine": machine(),
        **figures,
    }
    tmp = RESULTS / f"{name}.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(RESULTS / f"{name}.json")
    print(json.dumps(figures, indent=2), flush=True)


def launcher(run_dir: Path, *overrides: str, timeout: float = 1800) -> dict:
    """The real CLI in a subprocess; returns its summary.json."""
    args = [sys.executable, "-m", "launcher", f"hydra.run.dir={run_dir}", *overrides]
    subprocess.run(args, cwd=ROOT, timeout=timeout, check=False)
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


def _shaped_sender(endpoint: str, t0: float, rate_bps: float, count: int, size: int) -> None:
    import zmq

    from transport import EmulatedClock, LinkStats, Message, SendBatch, Sender, TokenBucket

    ctx, clock = zmq.Context(), EmulatedClock(t0, 1.0)
    stop, outbox, stats = threading.Event(), queue.Queue(), LinkStats()
    tx = Sender(
        ctx, 0, {1: endpoint}, TokenBucket(rate_bps, clock=clock.now), None, outbox, stop, stats
    )
    tx.start()
    tx.start_clock(clock)
    payload = np.ones(size // 4, dtype=np.float32)
    outbox.put(SendBatch(tuple(Message("model", 0, 1, i, 0, (payload,)) for i in range(count))))
    deadline = time.monotonic() + 120
    while stats.sent_messages < count and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    tx.join(5)
    ctx.destroy(linger=0)


def shaper_rate(rate_mbps: float, seconds: float = 4.0, size: int = 32_000) -> dict:
    import zmq

    from transport import Downlink, EmulatedClock, LinkStats, Receiver

    rate = rate_mbps * 1e6
    count = max(20, int(seconds * rate / (size * 8)))
    ctx = zmq.Context()
    clock = EmulatedClock(time.monotonic() + 0.5, 1.0)
    stop, inbox, stats = threading.Event(), queue.Queue(), LinkStats()
    down = Downlink(rate * 10, 0.001, clock=clock.now)
    rx = Receiver(ctx, 1, "tcp://127.0.0.1:0", down, None, inbox, stop, stats, 1 << 24)
    rx.start()
    rx.bound.wait(5)
    rx.start_clock(clock, frozenset({0}))
    spawn = mp.get_context("spawn")
    proc = spawn.Process(target=_shaped_sender, args=(rx.endpoint, clock.t0, rate, count, size))
    proc.start()
    times, deadline = [], time.monotonic() + seconds * 3 + 60
    while len(times) < count and time.monotonic() < deadline:
        try:
            inbox.get(timeout=1.0)
            times.append(clock.now())
        except queue.Empty:
            pass
    proc.join(30)
    stop.set()
    rx.join(5)
    ctx.destroy(linger=0)
    per_message = stats.total_delivered / max(1, len(times))
    measured = (len(times) - 1) * per_message * 8 / (times[-1] - times[0])
    return {
        "configured_mbps": rate_mbps,
        "measured_mbps": measured / 1e6,
        "messages": len(times),
        "error": measured / rate - 1,
    }


def bench_shaper() -> None:
    stop = mp.get_context("fork").Event()
    burners = [mp.get_context("fork").Process(target=_burn, args=(stop,)) for _ in range(4)]
    for b in burners:
        b.start()
    try:
        time.sleep(2.0)
        rates = [shaper_rate(r) for r in (1.0, 10.0, 100.0)]
    finally:
        stop.set()
        for b in burners:
            b.join(10)
    worst = max(abs(r["error"]) for r in rates)
    save(
        "shaper",
        {
            "load": "4 processes training CNN1D flat out on the same cores",
            "rates": rates,
            "worst_abs_error": worst,
            "target": 0.01,
            "meets_target": worst <= 0.01,
        },
    )


# ---- 2. memory and start-up at N=60 -------------------------------------------------------------
def bench_memory() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = launcher(Path(tmp) / "run", "num_nodes=60", "duration=4")
    mem = s["memory"]
    save(
        "memory",
        {
            "nodes": 60,
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


def bench_cifar_shard() -> None:
    """RSS a node gains loading its kshard shard of 60, against loading the whole training set,
    side by side on full-size CIFAR-10 files written in the real format (random pixels)."""
    sys.path.insert(0, str(ROOT))
    from node.config import DataSpec
    from node.data import task
    from tests.data_files import write_cifar10

    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(Path(tmp), per_batch=10_000, test=10_000)
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
def bare_steps_per_second(seconds: float = 5.0) -> float:
    import torch
    import torch.nn.functional as F

    from node.data import load_shard
    from node.models import build_model
    from node.torch_setup import configure_torch

    configure_torch(1)
    x, y = load_shard(ROOT / "data", 0, 60, "kshard", 1234)
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


def bench_efficiency() -> None:
    cores = len(os.sched_getaffinity(0))
    bare = bare_steps_per_second()
    with tempfile.TemporaryDirectory() as tmp:
        s = launcher(Path(tmp) / "run", "num_nodes=60", "duration=3", "compute.pace=false", "tdf=1")
    aggregate = s["local_steps"] / s["training_wall_seconds"]
    ratio = aggregate / (bare * cores)
    save(
        "efficiency",
        {
            "nodes": 60,
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
def bench_dilation(duration: float = 10.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        common = (f"duration={duration}", "eval.interval=1.0")
        first = launcher(Path(tmp) / "a", *common)
        a = first["tdf"]
        second = launcher(Path(tmp) / "b", *common, f"tdf={2 * a}")
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


def write_summary() -> None:
    lines = ["# Benchmark results", "", "Regenerated by `make bench` from the JSON files here.", ""]
    for path in sorted(RESULTS.glob("*.json")):
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
    (RESULTS / "SUMMARY.md").write_text("\n".join(lines))


BENCHES = {
    "shaper": bench_shaper,
    "memory": bench_memory,
    "cifar_shard": bench_cifar_shard,
    "efficiency": bench_efficiency,
    "dilation": bench_dilation,
}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    for name in names:
        print(f"== {name}", flush=True)
        BENCHES[name]()
    write_summary()


if __name__ == "__main__":
    main(sys.argv[1:])
