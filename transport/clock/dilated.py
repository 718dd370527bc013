"""Dilated wall time: emulated seconds since a shared start instant, `tdf` times slower."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class DilatedClock:
    """`now()` = (monotonic() - t0) / tdf; every node of a run shares `t0` and `tdf`.

    CLOCK_MONOTONIC is system-wide on Linux, so processes on one host agree on `t0` (on other
    hosts the launcher shifts `t0` by each node's measured offset).
    """

    virtual = False

    def __init__(self, t0: float, tdf: float, monotonic: Callable[[], float] = time.monotonic):
        if tdf < 1.0:
            raise ValueError("tdf must be >= 1")
        self.t0 = t0
        self.tdf = tdf
        self.monotonic = monotonic

    def now(self) -> float:
        return (self.monotonic() - self.t0) / self.tdf

    def wall_until(self, t_emulated: float) -> float:
        """Wall seconds from now until emulated time `t_emulated` (negative if already past)."""
        return self.t0 + t_emulated * self.tdf - self.monotonic()

    def sleep_until(self, t_emulated: float, stop: threading.Event) -> bool:
        """Sleep until `t_emulated` or until `stop` is set; True if the time was reached."""
        delay = self.wall_until(t_emulated)
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()

    def quiet_until(self, t_emulated: float) -> None:
        pass

    def close(self) -> None:
        pass
