"""What a node measures before the run so that the launcher can choose the time-dilation
factor: a burst of local steps through the compute gate, and trial rounds of the real hot loop
(exchange, merge and snapshot through a transport of their own) at a candidate factor. Every
trial leaves the node exactly as it was: model, optimizer, batch order, algorithm, counters."""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import replace

from node.counters import fresh_counters
from node.models import Batches
from node.timeline import Timeline
from transport import Clock, Transport


class _RoundClock:
    """Stands in for the metrics log during a trial: notes the process's CPU time at every
    round boundary, so that the first round (cold caches, the first snapshot, peers still
    connecting the trial's transport) can be left out of the measured demand and slack.
    Falling behind counts in every round; a one-round trial keeps its only round's slack."""

    def __init__(self, counters: dict | None):
        self.counters = counters
        self.marks: list[tuple[float, float]] = []  # (emulated t, process CPU seconds)

    def write(self, record: dict) -> None:
        if not self.marks and self.counters is not None:
            self.counters["slack_min"] = 1.0
        self.marks.append((record["t"], time.process_time()))

    def close(self) -> None:
        pass


@contextmanager
def _scratch(node):
    """Run on copies: a saved model and counters, another batch order, a fresh algorithm."""
    saved_flat, saved = node.flat.clone(), (node.batches, dict(node.counters), node.algorithm)
    batches = node.batches
    node.batches = Batches(batches.x, batches.y, batches.batch_size, seed=node.spec.seed + 7)
    try:
        yield
    finally:
        node.flat.copy_(saved_flat)
        node.optimizer.state.clear()  # no momentum buffer left over from calibration
        node.batches, node.counters, node.algorithm = saved


def burst(node, steps: int) -> tuple[float, float]:
    """(CPU, wall) seconds per local step over `steps` steps back to back inside the gate, as
    the run computes a round: one or `cores` nodes at a time, caches warm."""
    with _scratch(node):
        node.gate.acquire(0.0)  # every node asks with the same deadline: first come
        try:
            node._local_step()  # the first step of a burst pays for its cold start
            start, cpu = time.perf_counter(), time.thread_time()
            for _ in range(steps):
                node._local_step()
            wall = (time.perf_counter() - start) / steps
            cpu = (time.thread_time() - cpu) / steps
        finally:
            node.gate.release()
    return cpu, wall


def trial(node, transport: Transport, peers: dict[int, str], clock: Clock, rounds: int) -> dict:
    """`rounds` rounds of the real hot loop on `transport` (already bound), at `clock`'s
    factor, with a fresh algorithm; snapshots go to a scratch folder that is removed after.
    Returns what the launcher needs to judge the factor: CPU of the whole process (every
    thread) per emulated second, how far behind the node fell, and the late deliveries."""
    spec = node.spec
    duration = rounds * spec.algorithm.local_steps * spec.step_time
    scratch = node.run_dir / "calibration" / f"n{spec.node_id:03d}"
    saved = (node.transport, node.metrics, node.snapshot_dir, node.spec, node.clock, node.timeline)
    with _scratch(node):
        node.algorithm = node.new_algorithm()
        node.counters = fresh_counters()
        rounds_seen = _RoundClock(node.counters if rounds > 1 else None)
        node.transport, node.metrics, node.snapshot_dir = transport, rounds_seen, scratch
        node.timeline = Timeline(scratch, 0)  # a trial is not the run: records nothing
        interval = min(spec.eval_interval, duration)
        # a trial is static: the run's scenario starts with the run
        node.spec = replace(
            spec, duration=duration, eval_interval=interval, scenario=(), start_at=0.0,
            checkpoint=False,
        )  # fmt: skip
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            node.attach(transport)
            transport.connect(peers)
            node.start(clock)
            cpu, wall, waited = time.process_time(), time.perf_counter(), node.gate.waited
            node.run()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            marks = rounds_seen.marks
            if len(marks) >= 2:  # from the end of the first round to the end of the last
                cpu, duration = marks[-1][1] - marks[0][1], marks[-1][0] - marks[0][0]
            stats = transport.stats
            result = {
                "cpu_per_emulated_s": cpu / duration,
                "wall_s": wall,
                "behind_max": node.counters["behind_max"],
                "slack_min": node.counters["slack_min"],
                "late_actions": node.counters["late_actions"],
                "late_deliveries": stats.late_deliveries,
                "delivered": stats.delivered_messages,
                "gate_wait_s": node.gate.waited - waited,
            }
        finally:
            (
                node.transport,
                node.metrics,
                node.snapshot_dir,
                node.spec,
                node.clock,
                node.timeline,
            ) = saved
            shutil.rmtree(scratch, ignore_errors=True)
    return result
