"""One node's ZeroMQ transport in virtual time, with no thread of its own: its training thread
owns every data socket. Nothing happens at a wall-clock instant, so nothing needs a thread:
`send` books the uplink at the current emulated instant and hands the messages to ZeroMQ at
once, each stamped with its phase and place (keeper_link.ORDER, at the end of its header frame);
what arrives is read when the
node reports to the keeper or is asked to (SYNC), and staged; at the keeper's ADVANCE it goes
to the downlink in stamp order, as the in-memory twin hands over at each step, and what is due
is released. The links, the wire format and the counters are the dilated transport's own."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import zmq

from transport.clock import Clock
from transport.clock.keeper_link import ORDER
from transport.connections import Connections
from transport.link import MAX_PENDING_BYTES, check_sendable
from transport.receiver import admissible, close_inbound, inbound_socket
from transport.schedule import DownlinkQueue, Uplink
from transport.security import refusals, start_authenticator
from transport.sender import GONE_RETRY, HAND_OVER_TIMEOUT, flush_notice, outbound_socket
from transport.wire import FLUSH, Message, pack, stamp
from transport.zmq_base import ZmqEndpoint

WAIT_MS = 200  # how soon a thread waiting for messages owed notices `stop`
CONNECT_TIMEOUT = 30.0  # wall seconds for every connection opened before the run to be up


class VirtualZmqTransport(ZmqEndpoint):
    """A `Transport` for a node on the launcher's virtual clock (`FollowerClock`), and that
    clock's source: it says what it handed over and admitted, and acts at each ADVANCE.
    Create, use and close it in the node's training thread."""

    def __init__(self, *args, **kwargs):  # ZmqEndpoint's: node, link, kinds, stop, options
        super().__init__(*args, **kwargs)
        self.accepted = self.kinds | {FLUSH}
        self.inbound = self.monitor = None
        self.outbound: Connections | None = None
        self.uplink: Uplink | None = None
        self.known_sources: frozenset[int] = frozenset()
        self.on_deliver: Callable[[Message], None] | None = None
        # Read off the inbound socket, not yet handed to the downlink: (gen, src, seq, msg, size)
        self.staged: list[tuple[int, int, int, Message, int]] = []
        self.admitted = 0  # messages read in all
        self.handed: Counter = Counter()  # handed over per destination since the last report
        self.seq = 0  # messages handed over in all: this sender's part of their order stamp
        self.gone: dict[int, float] = {}  # peer -> wall instant it was found gone

    def _now(self) -> float:
        return self.clock.now()

    # ---- set-up ---------------------------------------------------------------------------------
    def bind(self) -> str:
        self.ctx = zmq.Context(io_threads=1)
        if self.curve is not None:
            self.authenticator = start_authenticator(self.ctx, self.curve)
        self.downlink = DownlinkQueue(
            self.link.downlink(self._now), self.stats, MAX_PENDING_BYTES, self.reach, self.node_id
        )
        self.inbound, self.monitor, endpoint = inbound_socket(
            self.ctx, self.bind_address, self.max_message_bytes, self.curve
        )
        return endpoint

    def connect(self, peers: dict[int, str]) -> None:
        self.peers = {p: ep for p, ep in peers.items() if p != self.node_id}
        self.known_sources = frozenset(self.peers)
        egress = self.link.egress(list(self.peers), self._now)
        self.uplink = Uplink(egress, self.stats, reach=self.reach, node_id=self.node_id)
        self.outbound = Connections(
            self.peers,
            lambda endpoint, eager: outbound_socket(self.ctx, endpoint, eager, self.curve),
            self.max_connections,
            self.stats,
        )
        # Opened before the run, each takes messages only once connected: be connected first.
        give_up = time.monotonic() + CONNECT_TIMEOUT
        for peer in list(self.outbound.opened()):
            left = give_up - time.monotonic()
            if not self.outbound.get(peer).poll(max(0, left) * 1000, zmq.POLLOUT):
                raise RuntimeError(f"node {self.node_id}: no connection to node {peer}")

    def start(self, clock: Clock) -> None:
        if not clock.virtual or not hasattr(clock, "attach"):
            raise ValueError("a virtual-time transport follows the launcher's virtual clock")
        self.clock = clock
        clock.attach(self)

    def respond_with(self, responder: Callable[[Message], Sequence[Message]]) -> None:
        """Answers leave at the delivery instant, at the keeper's ADVANCE."""

        def on_deliver(msg: Message) -> None:
            replies = responder(msg)
            if replies:
                self.send(replies)

        self.on_deliver = on_deliver

    def depart(self, peer: int) -> None:
        self.gone[peer] = math.inf  # for good: never waited for again

    # ---- sending ------------------------------------------------------------------------------
    def send(self, messages: Sequence[Message], replace: bool = False, block: bool = True) -> bool:
        """Booked on the uplink now, at this instant, and handed to ZeroMQ at once."""
        packed = tuple(
            pack(check_sendable(m, self.node_id, self.kinds, self.peers)) for m in messages
        )
        now = self.clock.now()
        notify, bookings = self.uplink.take(packed, replace, now)
        # The flush notices first: a receiver must not cut this batch with the old one.
        for dst in notify:
            self._hand_over(dst, flush_notice(self.node_id, dst, now))
        for booked in bookings:
            frames = stamp(booked.packed, booked.t_start, booked.t_end)
            handed = self._hand_over(booked.packed.dst, frames)
            if handed is not True:
                self.uplink.lost(booked, handed)
        return True

    def _hand_over(self, dst: int, frames: list) -> bool | str:
        """True, or "gone": the peer took nothing for HAND_OVER_TIMEOUT wall seconds (not
        connected: its process is dead), and is not waited for again for GONE_RETRY."""
        gone = self.gone.get(dst)
        if gone is not None and time.monotonic() - gone < GONE_RETRY:
            return "gone"
        self.gone.pop(dst, None)
        # The stamp rides at the end of the header frame (a frame of its own costs ZeroMQ a
        # quarter more per message); the link's size is the wire format's, without it.
        frames = [bytes(frames[0]) + ORDER.pack(self.clock.gen, self.seq), *frames[1:]]
        sock = self.outbound.get(dst)
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:  # not connected (yet, or any more): wait, bounded, as a sender does
            if not sock.poll(HAND_OVER_TIMEOUT * 1000, zmq.POLLOUT) or self.stop.is_set():
                self.gone[dst] = time.monotonic()
                return "gone"
            sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        self.handed[dst] += 1
        self.seq += 1
        return True

    # ---- receiving ----------------------------------------------------------------------------
    def _read(self) -> None:
        """Stage everything waiting on the inbound socket (and count refused handshakes)."""
        if self.monitor is not None:
            self.stats.refused_handshakes += refusals(self.monitor)
        while True:
            try:  # copied: cheaper than zero-copy frames at these sizes
                frames = self.inbound.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames[0]) <= ORDER.size:
                self.stats.malformed_messages += 1
                continue
            header = memoryview(frames[0])
            gen, seq = ORDER.unpack(header[-ORDER.size :])
            frames[0] = header[: -ORDER.size]
            msg = admissible(
                frames,
                self.accepted,
                self.max_message_bytes,
                self.node_id,
                self.known_sources,
                self.stats,
            )
            if msg is not None:
                size = sum(len(f) for f in frames)
                self.staged.append((gen, msg.src, seq, msg, size))
                self.admitted += 1

    def receive(self, until: float | None = None) -> Message | None:
        """What is due by now; with `until`, waits (the clock moving) for a delivery until then."""
        msg = self._take_ready()
        if msg is not None or until is None:
            return msg
        self.clock.wait(until, ready=self._any_ready, stop=self.stop)
        return self._take_ready()

    def _any_ready(self) -> bool:
        if not self.ready:
            for msg, size in self.downlink.release(self.clock.now()):
                self.ready.append(msg)
                self.stats.count_delivered(msg.src, size)
        return bool(self.ready)

    def _take_ready(self) -> Message | None:
        return self.ready.popleft() if self._any_ready() else None

    # ---- the follower clock's source ----------------------------------------------------------
    def quiesce(self, stop: threading.Event) -> None:
        """Nothing to wait for: everything sent was handed over in `send`."""

    def take_sent(self) -> dict[int, int]:
        handed, self.handed = dict(self.handed), Counter()
        return handed

    def pending(self) -> tuple[int, float, bool]:
        self._read()
        due = self.downlink.next_due()
        latency = self.downlink.downlink.latency_at
        for _, _, _, msg, _ in self.staged:
            # a flush acts from its instant; a message is first seen on its arrival
            due = min(due, msg.t_start + (0.0 if msg.kind == FLUSH else latency(msg.t_start)))
        return self.admitted, due, self.on_deliver is not None

    def wait_admitted(self, count: int, stop: threading.Event) -> None:
        self._read()
        while self.admitted < count and not stop.is_set():
            if self.inbound.poll(WAIT_MS):
                self._read()

    def advance(self, t: float, gen: int) -> None:
        """Hand over, in stamp order, what was sent before phase `gen`; count as sent what has
        left by `t`; release and answer what is due when answers are due at delivery."""
        due = sorted((e for e in self.staged if e[0] < gen), key=lambda e: e[:3])
        if due:
            self.staged = [e for e in self.staged if e[0] >= gen]
        for _, src, _, msg, size in due:
            if msg.kind == FLUSH:
                self.downlink.flush(src, msg.t_start)
            else:
                self.downlink.admit(msg, size)
        self.uplink.settle(t)
        if self.on_deliver is not None:
            for msg, size in self.downlink.release(t):
                self.on_deliver(msg)
                self.ready.append(msg)
                self.stats.count_delivered(msg.src, size)

    def discard(self) -> None:
        while True:
            try:
                self.inbound.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return

    def errors(self) -> list[str]:
        return []

    def close(self) -> None:
        """Close every socket (this is their thread), then terminate the context."""
        self.stop.set()
        if self.outbound is not None:
            self.outbound.close()
        close_inbound(self.inbound, self.monitor)
        self.inbound = None
        if self.authenticator is not None:
            self.authenticator.stop()
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None
