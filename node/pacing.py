"""The hot loop's pacing, a part of `Node`: a round's local steps computed a burst at a time
(inside the host's compute gate when a burst is more than a step), each burst held until its
emulated end; arriving after it is lag, counted, before it the share left is the slack."""

from __future__ import annotations

import time


class Pacing:
    """Mixed into `Node`, whose state it uses: spec, clock, deadline, horizon, gate, counters."""

    def _compute_round(self, round_: int, report) -> tuple[list[float], int]:
        """The round's local steps, a burst at a time: computed back to back inside the host's
        compute gate, then held until the burst's emulated end, where what arrived meanwhile
        is handed to the algorithm. A burst is the whole round when messages only count at
        round boundaries, else one step (and then no gate: a step is too short to queue for)."""
        spec, per_round = self.spec, self.spec.algorithm.local_steps
        losses, received = [], 0
        end, complete = self._round_end()
        self.clock.quiet_until(end)  # this round sends nothing before its end
        if self.burst > 1 and not complete:
            # The run ends before this round does: its steps could change nothing anyone
            # sees (no exchange, no merge, the snapshots show the settled model). Skip them.
            if spec.pace:
                self.clock.sleep_until(self.horizon, self.stop)
            self.deadline = end
            self._snapshots_until(self.deadline)
            return losses, received
        while len(losses) < per_round and not self.stop.is_set() and self.deadline < self.horizon:
            steps = min(self.burst, per_round - len(losses))
            gated = steps > 1 and spec.pace
            if gated:
                self.gate.acquire(self.deadline + steps * spec.step_time)
            cpu, burst_start = time.thread_time(), self.deadline
            try:
                for _ in range(steps):
                    if self.stop.is_set() or self.deadline >= self.horizon:
                        break
                    losses.append(self._local_step())
                    self.deadline += spec.step_time
            finally:
                if gated:
                    self.gate.release()
                self.counters["cpu_compute_s"] += time.thread_time() - cpu
            self.timeline.compute(burst_start, self.deadline)
            self._reach(self.deadline, steps * spec.step_time)
            received += self._drain()
            self._snapshots_until(self.deadline)
            if report and time.monotonic() - self.last_report >= spec.progress_every:
                report(self._progress(round_, self.deadline))
                self.last_report = time.monotonic()
        return losses, received

    def _round_end(self) -> tuple[float, bool]:
        """Where the step loop would leave `deadline` after this round, to the last bit, and
        whether the round completes before the up period's end."""
        deadline = self.deadline
        for _ in range(self.spec.algorithm.local_steps):
            if deadline >= self.horizon:
                return deadline, False
            deadline += self.spec.step_time
        return deadline, True

    def _reach(self, instant: float, span: float) -> None:
        """Wait for emulated `instant`, the end of a burst of `span` emulated seconds, before
        acting on it (handing over messages, sending, merging). Arriving after it is lag,
        counted with how far behind; before it, the share of the span left is the slack."""
        if not self.spec.pace:
            return
        behind = self.clock.now() - instant
        self.counters["slack_min"] = min(self.counters["slack_min"], -behind / span)
        if behind > 0:
            self.counters["late_actions"] += 1
            self.counters["behind_max"] = max(self.counters["behind_max"], behind)
            self.behind_round = max(self.behind_round, behind)
            return
        self.clock.sleep_until(instant, self.stop)
