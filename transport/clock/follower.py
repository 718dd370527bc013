"""A node process's end of the launcher's virtual clock. Its training thread is the only
participant that waits: when it does, it reports to the keeper until when (or for a delivery),
what its transport handed over since and what it has admitted, and sleeps until the keeper's
ADVANCE; there the transport hands over what arrived, releases what is due and answers what
must be answered at once, and the thread goes on if its wait is over. Nothing else in the
process looks at a wall clock to decide what happens when."""

from __future__ import annotations

import math
import os
import threading
from typing import Protocol

import zmq

from transport.clock.keeper_link import (
    ADVANCE,
    END,
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

    def pending(self) -> tuple[int, float, bool]:
        """(messages admitted in all, the next instant its queues change: an arrival or a
        delivery, and whether it answers deliveries at once, needing the clock there)."""

    def wait_admitted(self, count: int, stop: threading.Event) -> None:
        """Return once `count` messages have been admitted in all (or `stop`)."""

    def advance(self, t: float, gen: int) -> None:
        """Emulated time is `t` (phase `gen`): hand over, release and answer what is due."""

    def discard(self) -> None:
        """Read and drop whatever arrived: the node's run is over."""


class _Quiet:
    def quiesce(self, stop):
        pass

    def take_sent(self):
        return {}

    def pending(self):
        return 0, float("inf"), False

    def wait_admitted(self, count, stop):
        pass

    def advance(self, t, gen):
        pass

    def discard(self):
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
        self.horizon = -math.inf  # nobody sends before it: this node's instants until then
        self.quiet = -math.inf  # this node sends nothing before it, but to answer a delivery
        self.source: FollowerSource = _Quiet()
        self.ctx: zmq.Context | None = None
        self.sock: zmq.Socket | None = None
        self.reports = self.advances = self.alone = 0
        self.cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.slot = -1

    def open(self) -> None:
        self.ctx = zmq.Context(io_threads=1)
        self.sock = follower_socket(
            self.ctx, follower_name(self.node, self.incarnation), self.address
        )
        self.sock.rcvtimeo = POLL_MS

    def attach(self, source: FollowerSource) -> None:
        self.source = source

    def now(self) -> float:
        return self.t

    def wall_until(self, t_emulated: float) -> float:
        return 0.0

    def sleep_until(self, t_emulated: float, stop: threading.Event) -> bool:
        self.wait(t_emulated, None, stop)
        return not stop.is_set()

    def quiet_until(self, t_emulated: float) -> None:
        """The node's promise: it sends nothing before `t_emulated` (its round's end) unless
        to answer a delivery. What lets every node go through its instants alone until the
        earliest such instant of any node."""
        self.quiet = t_emulated

    def wait(self, until: float, ready=None, stop: threading.Event | None = None) -> None:
        """Until emulated `until`, or until `ready()` (a delivery the caller waits for), or
        `stop`. Time does not pass while this thread runs: a wait already over returns; one
        over before the keeper's horizon is this node's alone (nothing can reach it before)."""
        stop = stop or threading.Event()
        caring = ready is not None
        while not stop.is_set():
            if self.gen > 0 and (self.t >= until or (caring and ready())):
                return
            if self.gen > 0 and until < self.horizon:
                self.t = until
                self.alone += 1
                self.source.advance(until, self.gen)
                return
            self._report(until, caring, stop)
            if not self._await_advance(until, caring, stop):
                return

    def _report(self, until: float, caring: bool, stop: threading.Event) -> None:
        self.source.quiesce(stop)
        sent = self.source.take_sent()
        admitted, delivery, answers = self.source.pending()
        if caring or answers:  # it acts on a delivery at its instant
            due, quiet = min(until, delivery), min(self.quiet, delivery)
        else:  # it looks at what was delivered when its wait ends: it may answer from then
            due, quiet = until, min(self.quiet, max(delivery, until))
        self.sock.send(encode_report(self.gen, due, admitted, sent, quiet))
        self.reports += 1

    def _await_advance(self, until: float, caring: bool, stop: threading.Event) -> bool:
        """Answer SYNCs until an ADVANCE comes (True) or `stop` (False)."""
        while not stop.is_set():
            try:  # one blocking call (a poll, then a receive, cost twice the CPU)
                frame = self.sock.recv()
            except zmq.Again:
                continue
            kind, values = decode_keeper(frame)
            if kind == ADVANCE:
                self.gen, self.t, self.horizon, slot = values
                self._pin(slot)
                self.advances += 1
                self.source.advance(self.t, self.gen)
                return True
            if kind == END:  # (to a node still waiting: only if the keeper gave up on it)
                stop.set()
                return False
            self.source.wait_admitted(values[0], stop)  # SYNC
            self._report(until, caring, stop)
        return False

    def _pin(self, slot: int) -> None:
        """Compute on the core of the keeper's slot: woken next to a busy core, a node waits
        there while the other idles (measured here: the idle evaluators took 8% of the host)."""
        if slot < 0 or not self.cores or slot == self.slot:
            return
        self.slot = slot
        try:
            os.sched_setaffinity(0, {self.cores[slot % len(self.cores)]})  # this thread only
        except OSError:
            self.cores = []  # not allowed here: the scheduler places it

    def leave(self, stop: threading.Event) -> None:
        """This node's run is over: the keeper waits for it no more. It still takes what
        others send it (into nothing) until every node is done, as a finished node of the
        twin does: that a peer has gone must not depend on when its process exits."""
        self.sock.send(LEAVE)
        while not stop.is_set():
            self.source.discard()
            try:
                frame = self.sock.recv()
            except zmq.Again:
                continue
            if decode_keeper(frame)[0] == END:
                return

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.ctx.term()
            self.sock = None
