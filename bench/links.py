"""How exactly the shaped links hold their configured rate, with the cores busy training, and
what a MB costs the transport in CPU, with CURVE on the data sockets and without."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import Sizes, save


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


def send_shaped(link, endpoint: str, t0: float, count: int, size: int, timeout=120.0) -> int:
    """Run in a process of its own: node 0's transport pushes `count` messages of `size`
    bytes to node 1 at `endpoint` through `link`'s uplink; how many were sent in time."""
    from transport import DilatedClock, Message, ZmqTransport

    tx = ZmqTransport(0, link, frozenset({"model"}), threading.Event())
    try:
        tx.bind()
        tx.connect({1: endpoint})
        tx.start(DilatedClock(t0, 1.0))
        payload = np.ones(size // 4, dtype=np.float32)
        tx.send([Message("model", 0, 1, i, 0, (payload,)) for i in range(count)])
        deadline = time.monotonic() + timeout
        while tx.stats.sent_messages < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return tx.stats.sent_messages
    finally:
        tx.close()


def shaper_rate(rate_mbps: float, seconds: float = 4.0, size: int = 32_000) -> dict:
    from transport import DilatedClock, ZmqTransport

    count = max(20, int(seconds * rate_mbps * 1e6 / (size * 8)))
    clock = DilatedClock(time.monotonic() + 0.5, 1.0)
    # The downlink is 10x faster: the sender's uplink alone sets the pace.
    rx = ZmqTransport(1, _link(rate_mbps, rate_mbps * 10), frozenset({"model"}), threading.Event())
    proc = None
    try:
        endpoint = rx.bind()
        rx.connect({0: "tcp://127.0.0.1:1"})  # a source it accepts; never sent to
        rx.start(clock)
        spawn = mp.get_context("spawn")
        args = (_link(rate_mbps, rate_mbps), endpoint, clock.t0, count, size)
        proc = spawn.Process(target=send_shaped, args=args)
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


def transport_cpu_per_mb(curve: bool, megabytes: float, size: int = 250_000) -> float:
    """CPU seconds of this process (both ends: node 0 sending to node 1 over loopback, a fast
    link) per MB delivered, with CURVE on every data socket or without."""
    from transport import DilatedClock, Message, ZmqTransport
    from transport.security import CurveKeys

    keys = CurveKeys.generate() if curve else None
    fast = _link(100_000.0, 100_000.0)
    rx = ZmqTransport(1, fast, frozenset({"model"}), threading.Event(), curve=keys)
    tx = ZmqTransport(0, fast, frozenset({"model"}), threading.Event(), curve=keys)
    try:
        endpoint = rx.bind()
        tx.bind()
        tx.connect({1: endpoint})
        rx.connect({0: "tcp://127.0.0.1:1"})
        clock = DilatedClock(time.monotonic(), 1.0)
        for transport in (rx, tx):
            transport.start(clock)
        payload = np.ones(size // 4, dtype=np.float32)
        count = max(4, int(megabytes * 1e6 / size))
        got, cpu = 0, time.process_time()
        for start in range(0, count, 50):  # batches the outbox takes
            batch = range(start, min(start + 50, count))
            tx.send([Message("model", 0, 1, i, 0, (payload,)) for i in batch])
        deadline = time.monotonic() + 120
        while got < count and time.monotonic() < deadline:
            got += rx.receive(until=clock.now() + 1.0) is not None
        cpu = time.process_time() - cpu
        return cpu / (rx.stats.total_delivered / 1e6)
    finally:
        tx.close()
        rx.close()


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
    # Alone on the cores, after the burners: what authenticated, encrypted links cost.
    megabytes = 8.0 if sizes.extra else 200.0
    cpu = {mode: transport_cpu_per_mb(mode == "curve", megabytes) for mode in ("plain", "curve")}
    save(
        results,
        "shaper",
        {
            "load": f"{sizes.burners} processes training CNN1D flat out on the same cores",
            "rates": rates,
            "worst_abs_error": worst,
            "transport_cpu_s_per_mb": cpu,  # both ends, one process, loopback
            "curve_cpu_ratio": cpu["curve"] / cpu["plain"],
            "target": 0.01,
            "meets_target": worst <= 0.01,
        },
    )
