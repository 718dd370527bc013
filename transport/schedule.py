"""The emulated links' queues as pure state driven by explicit emulated instants: the uplink
(backlog, the message on the wire, those still crossing a path, the flush) and the downlink
(pending deliveries, their bookings, a sender's flush). No sockets, no threads, no sleeps."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass

from transport.shaper import Downlink, Egress
from transport.stats import LinkStats
from transport.wire import Message, Packed


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """Messages handed to the uplink together; `replace` drops everything unsent first."""

    messages: tuple[Packed, ...]
    replace: bool = False


@dataclass(frozen=True, slots=True)
class Booked:
    """A message booked on the links: it leaves the uplink at `u_end`, its path at `t_end`."""

    packed: Packed
    u_end: float
    t_start: float
    t_end: float


class Uplink:
    """A node's uplink as a serial link with per-destination paths (timing in `Egress`).

    A message occupies the uplink for size/rate emulated seconds, then waits in `held` until
    it has fully crossed its path (`t_end`); only then is it due for hand-over. A `replace`
    batch drops everything not fully transmitted, on the uplink or on a path, and frees every
    link at once, as the artifact's flush (sockets closed with linger=0) does. The flush also
    reaches what has left this node but still queues in a receiver's downlink: `take` returns
    every peer handed a message since the last flush, to be sent an unshaped flush notice.
    """

    def __init__(self, egress: Egress, stats: LinkStats, max_backlog: int = 10_000):
        self.egress, self.stats, self.max_backlog = egress, stats, max_backlog
        # (message, emulated time it was queued): a message waiting while the link was busy
        # starts exactly when the link frees, however late the owner wakes up.
        self.backlog: deque[tuple[Packed, float]] = deque()
        self.on_uplink: Booked | None = None
        self.held: list[tuple[float, int, Booked]] = []  # by t_end, then arrival order
        self._seq = itertools.count()
        self.sent_since_flush: set[int] = set()

    def take(self, messages: tuple[Packed, ...], replace: bool, now: float) -> list[int]:
        """Queue a batch at `now`; `replace` first drops all that is not fully sent. Returns
        the peers to notify of the flush (empty without `replace`)."""
        notify: list[int] = []
        if replace:
            for packed, _ in self.backlog:
                self.stats.count_dropped(packed.dst, packed.size)
            self.backlog.clear()
            if self.on_uplink is not None:
                self.stats.count_dropped(self.on_uplink.packed.dst, self.on_uplink.packed.size)
                self.on_uplink = None
            for _, _, booked in self.held:
                self.stats.count_dropped(booked.packed.dst, booked.packed.size)
            self.held.clear()
            self.egress.cut(now)
            notify = sorted(self.sent_since_flush)
            self.sent_since_flush.clear()
        for packed in messages:
            if len(self.backlog) >= self.max_backlog:
                oldest, _ = self.backlog.popleft()
                self.stats.count_dropped(oldest.dst, oldest.size)
            self.backlog.append((packed, now))
        return notify

    def next_due(self) -> float:
        """Emulated time of the next change: the uplink or the earliest held message finishes."""
        if self.on_uplink is None:
            if self.backlog:
                return float("-inf")  # a batch waits for the idle uplink: start it now
            due = float("inf")
        else:
            due = self.on_uplink.u_end
        return min(due, self.held[0][0]) if self.held else due

    def advance(self, now: float) -> list[Booked]:
        """Bring the schedule to `now`: move messages off the uplink and return, in order,
        those that have fully crossed their path, for hand-over (then `handed_over`)."""
        while self.on_uplink is not None or self.backlog:
            if self.on_uplink is None:
                packed, queued_at = self.backlog.popleft()
                timing = self.egress.reserve(packed.dst, packed.size, queued_at)
                self.on_uplink = Booked(packed, *timing)
            if self.on_uplink.u_end > now:
                break
            heapq.heappush(self.held, (self.on_uplink.t_end, next(self._seq), self.on_uplink))
            self.on_uplink = None
        due = []
        while self.held and self.held[0][0] <= now:
            due.append(heapq.heappop(self.held)[2])
        return due

    def handed_over(self, booked: Booked) -> None:
        self.sent_since_flush.add(booked.packed.dst)
        self.stats.count_sent(booked.packed.dst, booked.packed.size)

    def lost(self, booked: Booked) -> None:
        """The hand-over did not happen (the node is stopping): the message never left."""
        self.stats.count_dropped(booked.packed.dst, booked.packed.size)


@dataclass(slots=True)
class _Pending:
    deliver_at: float
    seq: int
    msg: Message
    size: int
    start: float  # the downlink's booking for this message
    finish: float


class DownlinkQueue:
    """Delivered messages wait here, bounded in bytes, until their emulated delivery instant.

    A sender's flush cuts what of its traffic was not delivered by the flush instant, and what
    queued behind it in the downlink moves up into the share it frees.
    """

    def __init__(self, downlink: Downlink, stats: LinkStats, max_pending_bytes: int):
        self.downlink, self.stats, self.max_pending_bytes = downlink, stats, max_pending_bytes
        self._pending: list[tuple[float, int, _Pending]] = []
        self._released_finish = float("-inf")  # the downlink is busy until this for released ones
        self._pending_bytes = 0
        self._seq = itertools.count()

    def admit(self, msg: Message, size: int) -> float | None:
        """Book the downlink for `msg`: its delivery instant, or None (counted) when the
        queue is full."""
        if self._pending_bytes + size > self.max_pending_bytes:
            self.stats.inbox_overflow_messages += 1
            return None
        start, finish, deliver_at = self.downlink.book(size, msg.t_start, msg.t_end)
        entry = _Pending(deliver_at, next(self._seq), msg, size, start, finish)
        heapq.heappush(self._pending, (deliver_at, entry.seq, entry))
        self._pending_bytes += size
        return deliver_at

    def next_due(self) -> float:
        return self._pending[0][0] if self._pending else float("inf")

    def flush(self, src: int, at: float) -> None:
        """`src` flushed at `at`: what of its traffic was not delivered by then is lost."""
        entries = [e for _, _, e in self._pending]
        cut = [e for e in entries if e.msg.src == src and e.deliver_at > at]
        if not cut:
            return
        for e in cut:
            self._pending_bytes -= e.size
            self.stats.count_flushed(src, e.size)
        cut_seqs = {e.seq for e in cut}
        kept = [e for e in entries if e.seq not in cut_seqs]
        # The downlink stays as booked up to the flush; a message cut midway held it till then.
        busy_until = [self._released_finish]
        busy_until += [at for e in cut if e.start < at]
        busy_until += [e.finish for e in kept if e.start <= at]
        behind = sorted((e for e in kept if e.start > at), key=lambda e: e.seq)
        rebooked = self.downlink.rebook(
            [(e.size, e.msg.t_start, e.msg.t_end) for e in behind], max(busy_until)
        )
        for e, (start, finish, deliver_at) in zip(behind, rebooked, strict=True):
            e.start, e.finish, e.deliver_at = start, finish, deliver_at
        self._pending = [(e.deliver_at, e.seq, e) for e in kept]
        heapq.heapify(self._pending)

    def release(self, now: float, late_after: float | None = None) -> list[tuple[Message, int]]:
        """Every message due by `now`, in delivery order, with its size; with `late_after`,
        one released more than that many emulated seconds after its instant counts as late."""
        out = []
        while self._pending and self._pending[0][0] <= now:
            deliver_at, _, entry = heapq.heappop(self._pending)
            self._pending_bytes -= entry.size
            self._released_finish = max(self._released_finish, entry.finish)
            if late_after is not None:
                self.stats.count_lateness(now - deliver_at, late_after)
            out.append((entry.msg, entry.size))
        return out
