"""Emulated time, one protocol for every side of a run: a node's pacing and its socket threads,
the shaper (through `now`) and the launcher. Three clocks keep it:

- `DilatedClock` (dilated.py): wall time slowed down by a factor, `(monotonic() - t0) / tdf`;
- `FollowerClock` (follower.py): a node process's end of the launcher's virtual clock, which
  moves when every node waits and every message handed over has been received (the keeper is
  launcher/running/timekeeper.py, driven by launcher/running/virtual_time.py; what they say
  to each other is keeper_link.py);
- `VirtualClock` (virtual.py): the same rule for threads of one process (the in-memory twin).
"""

from __future__ import annotations

import threading
from typing import Protocol

from transport.clock.dilated import DilatedClock
from transport.clock.follower import FollowerClock
from transport.clock.keeper_link import KeeperAddress
from transport.clock.virtual import VirtualClock


class Clock(Protocol):
    """Emulated time as a node, its threads and the launcher see it. `virtual`: kept by the
    clock's participants (nothing is ever late, no wall-clock pacing); `wall_until` is then 0:
    there is nothing to wait for on the wall clock, the instant comes when everyone is done."""

    virtual: bool

    def now(self) -> float: ...

    def wall_until(self, t_emulated: float) -> float: ...

    def sleep_until(self, t_emulated: float, stop: threading.Event) -> bool: ...

    def quiet_until(self, t_emulated: float) -> None:
        """The node sends nothing before `t_emulated` unless to answer a delivery (a hint a
        virtual clock looks ahead with; the others ignore it)."""

    def close(self) -> None: ...


__all__ = ["Clock", "DilatedClock", "FollowerClock", "KeeperAddress", "VirtualClock"]
