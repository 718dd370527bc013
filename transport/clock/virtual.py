"""Virtual time for the threads of one process (the in-memory twin): it stands still while any
participant runs and jumps to the next instant anything is due when all of them wait."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Waiter:
    until: float
    ready: Callable[[], bool] | None
    stop: threading.Event | None
    released: bool = False

    def satisfied(self, now: float) -> bool:
        return (
            now >= self.until
            or (self.ready is not None and self.ready())
            or (self.stop is not None and self.stop.is_set())
        )


class VirtualClock:
    """Emulated time for participants (threads) of one process. It stands still while any
    participant runs; when all of them wait, it first brings every source (the network) up
    to date, releases whoever may go on, and otherwise jumps to the next instant anything is
    due. Every participant `join`s before any of them starts and `leave`s when it ends."""

    virtual = True

    def __init__(self, t: float = 0.0):
        self._t = t
        self._cond = threading.Condition()
        self._running = 0
        self._waiters: list[_Waiter] = []
        self._sources: list = []

    def now(self) -> float:
        return self._t

    def wall_until(self, t_emulated: float) -> float:
        return 0.0

    def quiet_until(self, t_emulated: float) -> None:
        pass

    def close(self) -> None:
        pass

    def add_source(self, source) -> None:
        """`source.next_due()` and `source.advance(t)` are called only while everyone waits."""
        self._sources.append(source)

    def join(self) -> None:
        with self._cond:
            self._running += 1

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._step_if_idle()

    def sleep_until(self, t_emulated: float, stop: threading.Event) -> bool:
        """Wait until `t_emulated` or until `stop` is set; True if the time was reached."""
        self.wait(t_emulated, stop=stop)
        return not stop.is_set()

    def wait(
        self,
        until: float,
        ready: Callable[[], bool] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Block the calling participant until `until`, `ready()` or `stop`."""
        waiter = _Waiter(until, ready, stop)
        with self._cond:
            if waiter.satisfied(self._t):
                return
            self._waiters.append(waiter)
            self._running -= 1
            self._step_if_idle()
            while not waiter.released:
                self._cond.wait(timeout=1.0)
                if not waiter.released and stop is not None and stop.is_set():
                    self._release([waiter])

    def _release(self, waiters: list[_Waiter]) -> None:
        for waiter in waiters:
            waiter.released = True
            self._waiters.remove(waiter)
        self._running += len(waiters)
        self._cond.notify_all()

    def _step_if_idle(self) -> None:
        while self._running == 0 and self._waiters:
            for source in self._sources:
                source.advance(self._t)
            released = [w for w in self._waiters if w.satisfied(self._t)]
            if released:
                self._release(released)
                return
            due = [w.until for w in self._waiters] + [s.next_due() for s in self._sources]
            if min(due) == float("inf"):
                raise RuntimeError("virtual clock: every participant waits for ever")
            self._t = max(self._t, min(due))
