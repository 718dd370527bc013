"""A node's place in emulated time and how it keeps to it: a round's local steps computed a
burst at a time (inside the host's compute gate when a burst is more than a step), each burst
held until its emulated end; arriving after it is lag, counted, before it the share left is the
slack. A collaborator of `Node`: it owns the emulated instants, the node owns the model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from node.spec import NodeSpec
from node.timeline import Timeline
from transport import Clock, Gate, NoGate


class Pacer:
    """Owns `deadline` (the emulated end of the last step computed), `horizon` (the end of the
    current up period) and `behind_round` (the current round's worst lag); counts lag and
    slack in the node's `counters`, which it is handed."""

    def __init__(
        self, spec: NodeSpec, burst: int, stop: threading.Event, counters: dict, timeline: Timeline
    ):
        self.step_time, self.per_round = spec.step_time, spec.algorithm.local_steps
        self.pace, self.burst, self.stop = spec.pace, burst, stop
        self.counters, self.timeline = counters, timeline
        self.clock: Clock | None = None
        self.gate: Gate = NoGate()
        self.deadline, self.horizon, self.behind_round = 0.0, spec.duration, 0.0

    def start(self, clock: Clock, gate: Gate) -> None:
        """The run's clock, and the host's compute gate the bursts queue for."""
        self.clock, self.gate = clock, gate

    def enter_period(self, start: float, end: float) -> None:
        """An up period `[start, end)` begins: steps are computed from `start` on."""
        self.deadline, self.horizon = start, end

    def wait_until(self, t: float) -> None:
        """Away until `t` (a join): nothing is sent before it, and nothing happens."""
        if self.pace:
            self.clock.quiet_until(t)
            self.clock.sleep_until(t, self.stop)

    def catch_up(self) -> float:
        """A synchronous round resumes computing when its wait ended: the new deadline."""
        self.deadline = max(self.deadline, self.clock.now())
        return self.deadline

    def new_round(self) -> None:
        self.behind_round = 0.0

    def compute_round(
        self,
        step: Callable[[], float],
        after_burst: Callable[[float], int],
        skipped_to: Callable[[float], None],
    ) -> tuple[list[float], int]:
        """The round's local steps (`step()` each, its loss), a burst at a time: computed back
        to back inside the host's compute gate, then held until the burst's emulated end,
        where `after_burst(end)` hands over what arrived meanwhile (returns how many). A burst
        is the whole round when messages only count at round boundaries, else one step (and
        then no gate: a step is too short to queue for). Returns the losses and the count."""
        losses, received = [], 0
        end, complete = self.round_end()
        self.clock.quiet_until(end)  # this round sends nothing before its end
        if self.burst > 1 and not complete:
            # The run ends before this round does: its steps could change nothing anyone
            # sees (no exchange, no merge, the snapshots show the settled model). Skip them.
            if self.pace:
                self.clock.sleep_until(self.horizon, self.stop)
            self.deadline = end
            skipped_to(end)
            return losses, received
        while (
            len(losses) < self.per_round and not self.stop.is_set() and self.deadline < self.horizon
        ):
            steps = min(self.burst, self.per_round - len(losses))
            gated = steps > 1 and self.pace
            if gated:
                self.gate.acquire(self.deadline + steps * self.step_time)
            cpu, burst_start = time.thread_time(), self.deadline
            try:
                for _ in range(steps):
                    if self.stop.is_set() or self.deadline >= self.horizon:
                        break
                    losses.append(step())
                    self.deadline += self.step_time
            finally:
                if gated:
                    self.gate.release()
                self.counters["cpu_compute_s"] += time.thread_time() - cpu
            self.timeline.compute(burst_start, self.deadline)
            self._reach(self.deadline, steps * self.step_time)
            received += after_burst(self.deadline)
        return losses, received

    def round_end(self) -> tuple[float, bool]:
        """Where the step loop would leave `deadline` after this round, to the last bit, and
        whether the round completes before the up period's end."""
        deadline = self.deadline
        for _ in range(self.per_round):
            if deadline >= self.horizon:
                return deadline, False
            deadline += self.step_time
        return deadline, True

    def _reach(self, instant: float, span: float) -> None:
        """Wait for emulated `instant`, the end of a burst of `span` emulated seconds, before
        acting on it (handing over messages, sending, merging). Arriving after it is lag,
        counted with how far behind; before it, the share of the span left is the slack."""
        if not self.pace:
            return
        behind = self.clock.now() - instant
        self.counters["slack_min"] = min(self.counters["slack_min"], -behind / span)
        if behind > 0:
            self.counters["late_actions"] += 1
            self.counters["behind_max"] = max(self.counters["behind_max"], behind)
            self.behind_round = max(self.behind_round, behind)
            return
        self.clock.sleep_until(instant, self.stop)
