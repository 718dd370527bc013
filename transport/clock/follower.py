"""A node process's end of the launcher's virtual clock. Its training thread is the only
participant that waits: when it does, it reports to the keeper until when (or for a delivery),
what its transport handed over since and what it has admitted, and sleeps until the keeper's
ADVANCE; there the transport hands over what arrived, releases what is due and answers what
must be answered at once, and the thread goes on if its wait is over. Nothing else in the
process looks at a wall clock to decide what happens when."""

from __future__ import annotations

import threading
from typing import Protocol

import zmq

from transport.clock.keeper_link import (
    ADVANCE,
    LEAVE,
    KeeperAddress,
    decode_keeper,
    encode_report,
    follower_name,
    follower_socket,
)

POLL_MS = 200  # how soon a waiting thread notices `stop`; an ADVANCE wakes it at once


class FollowerSource(Protocol):
    """What the clock needs of the node's transport."""

    def quiesce(self, stop: threading.Event) -> None:
        """Return once everything queued to send has been handed over (and counted)."""

    def take_sent(self) -> dict[int, int]:
        """Messages handed over per destination since the last call."""

    def pending(self, caring: bool) -> tuple[int, float]:
        """(messages admitted in all, the next instant its queues need the clock: an arrival
        or a delivery; only when `caring`, or when it answers deliveries itself, else inf)."""

    def wait_admitted(self, count: int, stop: threading.Event) -> None:
        """Return once `count` messages have been admitted in all (or `stop`)."""

    def advance(self, t: float, gen: int) -> None:
        """Emulated time is `t` (phase `gen`): hand over, release and answer what is due."""


class _Quiet:
    def quiesce(self, stop):
        pass

    def take_sent(self):
        return {}

    def pending(self, caring):
        return 0, float("inf")

    def wait_admitted(self, count, stop):
        pass

    def advance(self, t, gen):
        pass


class FollowerClock:
    """`now()` is the instant of the keeper's last ADVANCE; `wait` reports and sleeps until one
    that ends the wait. Opened and used by the node's training thread only (`open` there);
    `gen` 0 means no ADVANCE yet: the run has not started for this node."""

    virtual = True

    def __init__(
        self,
        address: KeeperAddress,
        node: int,
        incarnation: int = 0,
        t: float = 0.0,
        gen: int = 0,
    ):
        self.address, self.node, self.incarnation = address, node, incarnation
        self.t, self.gen = t, gen
        self.source: FollowerSource = _Quiet()
        self.ctx: zmq.Context | None = None
        self.sock: zmq.Socket | None = None
        self.reports = self.advances = 0

    def open(self) -> None:
        self.ctx = zmq.Context(io_threads=1)
        self.sock = follower_socket(
            self.ctx, follower_name(self.node, self.incarnation), self.address
        )

    def attach(self, source: FollowerSource) -> None:
        self.source = source

    def now(self) -> float:
        return self.t

    def wall_until(self, t_emulated: float) -> float:
        return 0.0

    def sleep_until(self, t_emulated: float, stop: threading.Event) -> bool:
        self.wait(t_emulated, None, stop)
        return not stop.is_set()

    def wait(self, until: float, ready=None, stop: threading.Event | None = None) -> None:
        """Until emulated `until`, or until `ready()` (a delivery the caller waits for), or
        `stop`. Time does not pass while this thread runs: a wait already over returns."""
        stop = stop or threading.Event()
        caring = ready is not None
        while not stop.is_set():
            if self.gen > 0 and (self.t >= until or (caring and ready())):
                return
            self._report(until, caring, stop)
            if not self._await_advance(until, caring, stop):
                return

    def _report(self, until: float, caring: bool, stop: threading.Event) -> None:
        self.source.quiesce(stop)
        sent = self.source.take_sent()
        admitted, due = self.source.pending(caring)
        self.sock.send(encode_report(self.gen, min(until, due), admitted, sent))
        self.reports += 1

    def _await_advance(self, until: float, caring: bool, stop: threading.Event) -> bool:
        """Answer SYNCs until an ADVANCE comes (True) or `stop` (False)."""
        while not stop.is_set():
            if not self.sock.poll(POLL_MS):
                continue
            kind, values = decode_keeper(self.sock.recv())
            if kind == ADVANCE:
                self.gen, self.t = values
                self.advances += 1
                self.source.advance(self.t, self.gen)
                return True
            self.source.wait_admitted(values[0], stop)  # SYNC
            self._report(until, caring, stop)
        return False

    def leave(self) -> None:
        """This node's run is over: the keeper waits for it no more."""
        if self.sock is not None:
            self.sock.send(LEAVE)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.ctx.term()
            self.sock = None
