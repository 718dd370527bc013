"""What a node measures before the run so that the launcher can choose the time-dilation
factor: a burst of local steps through the compute gate, and trial rounds of the real hot loop
(exchange, merge and snapshot through a transport of their own) at a candidate factor. Both run
on a node of their own (`trial_node`) on the node's shard: the node itself is never touched."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace

from node.counters import fresh_counters
from node.runtime import Node
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


def trial_node(node: Node, transport: Transport | None, metrics: _RoundClock, counters: dict,
               **spec_changes) -> Node:  # fmt: skip
    """A node as `node`'s spec with `spec_changes` says, on `node`'s shard (shared, read only),
    in its host's compute gate, with a model, optimizer, algorithm and `counters` of its own;
    it keeps no checkpoint and no timeline, and its rounds' records go to `metrics`."""
    spec = replace(node.spec, checkpoint=False, timeline=0, **spec_changes)
    trial = Node(spec, transport, node.stop, node.gate, metrics, counters)
    trial.build(node.batches.x, node.batches.y)
    return trial


def burst(node: Node, steps: int) -> tuple[float, float]:
    """(CPU, wall) seconds per local step over `steps` steps back to back inside the gate, as
    the run computes a round: one or `cores` nodes at a time, caches warm."""
    scratch = trial_node(node, None, _RoundClock(None), fresh_counters())
    node.gate.acquire(0.0)  # every node asks with the same deadline: first come
    try:
        scratch.local_step()  # the first step of a burst pays for its cold start
        start, cpu = time.perf_counter(), time.thread_time()
        for _ in range(steps):
            scratch.local_step()
        wall = (time.perf_counter() - start) / steps
        cpu = (time.thread_time() - cpu) / steps
    finally:
        node.gate.release()
    return cpu, wall


def trial(
    node: Node, transport: Transport, peers: dict[int, str], clock: Clock, rounds: int
) -> dict:
    """`rounds` rounds of the real hot loop on `transport` (already bound), at `clock`'s
    factor, on a trial node with a fresh algorithm; snapshots go to a scratch folder that is
    removed after. Returns what the launcher needs to judge the factor: CPU of the whole
    process (every thread) per emulated second, how far behind the node fell, and the late
    deliveries."""
    spec = node.spec
    duration = rounds * spec.algorithm.local_steps * spec.step_time
    scratch = node.run_dir / "calibration" / f"n{spec.node_id:03d}"
    counters = fresh_counters()
    rounds_seen = _RoundClock(counters if rounds > 1 else None)
    try:
        # a trial is static: the run's scenario starts with the run
        measured = trial_node(
            node, transport, rounds_seen, counters, run_dir=str(scratch), duration=duration,
            eval_interval=min(spec.eval_interval, duration), scenario=(), start_at=0.0,
        )  # fmt: skip
        measured.attach(transport)
        transport.connect(peers)
        measured.start(clock)
        cpu, wall, waited = time.process_time(), time.perf_counter(), node.gate.waited
        measured.run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        marks = rounds_seen.marks
        if len(marks) >= 2:  # from the end of the first round to the end of the last
            cpu, duration = marks[-1][1] - marks[0][1], marks[-1][0] - marks[0][0]
        stats = transport.stats
        return {
            "cpu_per_emulated_s": cpu / duration,
            "wall_s": wall,
            "behind_max": counters["behind_max"],
            "slack_min": counters["slack_min"],
            "late_actions": counters["late_actions"],
            "late_deliveries": stats.late_deliveries,
            "delivered": stats.delivered_messages,
            "gate_wait_s": node.gate.waited - waited,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
