"""The sender and receiver threads of one node: each owns its ZeroMQ sockets and shapes its link."""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
from collections import Counter, deque
from dataclasses import dataclass, field

import zmq

from transport.clock import EmulatedClock
from transport.shaper import Downlink, Egress, TokenBucket
from transport.wire import FLUSH, Message, WireError, decode, encode, wire_size

# A tiny high-water mark: the emulated uplink is the only queue; ZeroMQ must not hide another.
SEND_HWM = 4
RECV_HWM = 64
POLL_MS = 50
# A delivery released this many emulated seconds after its time counts as late.
LATE_AFTER = 0.005


@dataclass
class LinkStats:
    """Per-peer byte and message counters. Sender and receiver each write only their own fields."""

    sent_bytes: Counter = field(default_factory=Counter)  # per destination, fully on the wire
    dropped_bytes: Counter = field(default_factory=Counter)  # per destination, never sent
    delivered_bytes: Counter = field(default_factory=Counter)  # per source, handed to the inbox
    # Scalar totals so that other threads can read them while these are being written.
    total_sent: int = 0
    total_dropped: int = 0
    total_delivered: int = 0
    sent_messages: int = 0
    dropped_messages: int = 0
    delivered_messages: int = 0
    malformed_messages: int = 0
    inbox_overflow_messages: int = 0
    late_deliveries: int = 0  # released after their emulated delivery time (host overloaded)
    # Received but cut in the downlink queue by the sender's flush (its sender counted them sent).
    flushed_bytes: Counter = field(default_factory=Counter)  # per source
    total_flushed: int = 0
    flushed_messages: int = 0
    max_delivery_lateness: float = 0.0  # emulated seconds

    def per_peer(self) -> dict[str, dict[int, int]]:
        """Per-link byte counters; read only after the owning threads have stopped."""
        return {
            "sent": dict(self.sent_bytes),
            "dropped": dict(self.dropped_bytes),
            "delivered": dict(self.delivered_bytes),
            "flushed": dict(self.flushed_bytes),
        }

    def totals(self) -> dict[str, float]:
        return {
            "bytes_sent": self.total_sent,
            "bytes_dropped": self.total_dropped,
            "bytes_delivered": self.total_delivered,
            "messages_sent": self.sent_messages,
            "messages_dropped": self.dropped_messages,
            "messages_delivered": self.delivered_messages,
            "messages_malformed": self.malformed_messages,
            "messages_inbox_overflow": self.inbox_overflow_messages,
            "late_deliveries": self.late_deliveries,
            "bytes_flushed_downlink": self.total_flushed,
            "messages_flushed_downlink": self.flushed_messages,
            "max_delivery_lateness": self.max_delivery_lateness,
        }


@dataclass(frozen=True, slots=True)
class _Booked:
    """A message booked on the links: it leaves the uplink at `u_end`, its path at `t_end`."""

    msg: Message
    size: int
    u_end: float
    t_start: float
    t_end: float


@dataclass(frozen=True)
class SendBatch:
    """Messages from the trainer. `replace` drops everything unsent first (DivShare's policy)."""

    messages: tuple[Message, ...]
    replace: bool = False


class Sender(threading.Thread):
    """Owns one PUSH socket per peer and the node's uplink; sends one message at a time.

    A message occupies the uplink for size/rate emulated seconds and is handed to ZeroMQ when
    its last byte has left. A `replace` batch arriving meanwhile cuts it: the message is lost.

    `paths` (destination -> bucket) adds a per-destination path rate beside the uplink, as
    Kollaps shapes a geo-distributed topology. A message first reserves the uplink, serially,
    and the path to its destination from its uplink start on:
    `p_start, p_end = path.reserve(size, at=u_start)`. It is stamped
    `t_start = max(u_start, p_start)`, `t_end = max(u_end, p_end)`. Messages to one destination
    queue FIFO on its path (one TCP connection). A path slower than the uplink does not hold
    the uplink: the next message starts at `u_end`, a fluid approximation of parallel TCP
    flows. Each path is its own pipe: flows to different destinations never share a path.
    Past `u_end` a message waits in `held` until `t_end` and only then goes to ZeroMQ, so a
    `replace` batch drops everything not fully transmitted, on the uplink or on a path, and
    frees every link at once, as the artifact's flush (sockets closed with linger=0) does.
    The flush also reaches what has left this node but still queues in a receiver's downlink
    (TCP back-pressure would have kept it here): every peer sent to since the last flush gets
    an unshaped `flush` notice, and drops what of ours it has not delivered yet.
    Without `paths` (None or empty) only the uplink shapes, exactly as before. The timing
    itself lives in `Egress`.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        node_id: int,
        peers: dict[int, str],
        uplink: TokenBucket,
        clock: EmulatedClock | None,
        outbox: queue.Queue,
        stop: threading.Event,
        stats: LinkStats,
        max_backlog: int = 10_000,
        paths: dict[int, TokenBucket] | None = None,
    ):
        super().__init__(name=f"sender-{node_id}", daemon=True)
        self.ctx, self.node_id, self.peers = ctx, node_id, peers
        self.uplink, self.clock, self.outbox = uplink, clock, outbox
        self.stop, self.stats, self.max_backlog = stop, stats, max_backlog
        self.egress = Egress(uplink, paths)
        # (message, emulated time it was queued): a message waiting while the link was busy
        # starts exactly when the link frees, however late this thread wakes up.
        self.backlog: deque[tuple[Message, float]] = deque()
        # The message on the uplink, then those past it still crossing their path (by t_end).
        self.on_uplink: _Booked | None = None
        self.held: list[tuple[float, int, _Booked]] = []
        self._seq = itertools.count()
        self.sent_since_flush: set[int] = set()
        self.error: BaseException | None = None
        self.connected = threading.Event()
        self.started_clock = threading.Event()

    def start_clock(self, clock: EmulatedClock) -> None:
        """Called once by the runtime when the run's shared `t0` is known."""
        self.clock = clock
        self.started_clock.set()

    def run(self) -> None:
        sockets: dict[int, zmq.Socket] = {}
        try:
            # Connect long before t0: 60 nodes opening 59 connections each is a storm of its own.
            for peer, endpoint in self.peers.items():
                sock = self.ctx.socket(zmq.PUSH)
                sock.setsockopt(zmq.SNDHWM, SEND_HWM)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.IMMEDIATE, 1)
                sock.connect(endpoint)
                sockets[peer] = sock
            self.connected.set()
            while not self.stop.is_set() and not self.started_clock.wait(POLL_MS / 1000):
                pass
            self._loop(sockets)
        except BaseException as exc:  # reported by the node runtime, never swallowed
            self.error = exc
            self.stop.set()
        finally:
            for sock in sockets.values():
                sock.close(linger=0)

    def _drop(self, msg: Message, size: int) -> None:
        self.stats.dropped_bytes[msg.dst] += size
        self.stats.total_dropped += size
        self.stats.dropped_messages += 1

    def _take(self, command: SendBatch, now: float, sockets: dict[int, zmq.Socket]) -> None:
        """Apply a batch at `now`; `replace` first drops all that is not fully sent."""
        if command.replace:
            for msg, _ in self.backlog:
                self._drop(msg, wire_size(msg))
            self.backlog.clear()
            if self.on_uplink is not None:
                self._drop(self.on_uplink.msg, self.on_uplink.size)
                self.on_uplink = None
            for _, _, booked in self.held:
                self._drop(booked.msg, booked.size)
            self.held.clear()
            self.egress.cut(now)
            for dst in sorted(self.sent_since_flush):
                notice = Message(FLUSH, self.node_id, dst, -1, 0, (), {}, now, now)
                self._hand_over(sockets[dst], encode(notice))
            self.sent_since_flush.clear()
        for msg in command.messages:
            if len(self.backlog) >= self.max_backlog:
                oldest, _ = self.backlog.popleft()
                self._drop(oldest, wire_size(oldest))
            self.backlog.append((msg, now))

    def _loop(self, sockets: dict[int, zmq.Socket]) -> None:
        while not self.stop.is_set():
            wait = min(POLL_MS / 1000, self.clock.wall_until(self._next_due()))
            try:
                command = self.outbox.get(timeout=max(0.0, wait))
            except queue.Empty:
                command = None
            now = self.clock.now()
            self._advance(sockets, now)  # what was fully sent before the batch came is not cut
            if command is not None:
                self._take(command, now, sockets)

    def _next_due(self) -> float:
        """Emulated time of the next step: the uplink or the earliest held message finishes."""
        if self.on_uplink is None:
            if self.backlog:
                return float("-inf")  # a batch waits for the idle uplink: start it now
            due = float("inf")
        else:
            due = self.on_uplink.u_end
        return min(due, self.held[0][0]) if self.held else due

    def _advance(self, sockets: dict[int, zmq.Socket], now: float) -> None:
        """Bring the schedule to `now`: move messages off the uplink, hand over what has arrived."""
        while self.on_uplink is not None or self.backlog:
            if self.on_uplink is None:
                msg, queued_at = self.backlog.popleft()
                size = wire_size(msg)
                self.on_uplink = _Booked(msg, size, *self.egress.reserve(msg.dst, size, queued_at))
            if self.on_uplink.u_end > now:
                break
            heapq.heappush(self.held, (self.on_uplink.t_end, next(self._seq), self.on_uplink))
            self.on_uplink = None
        while self.held and self.held[0][0] <= now:
            if self.stop.is_set():
                return
            _, _, booked = heapq.heappop(self.held)
            msg = booked.msg
            stamped = Message(
                msg.kind,
                msg.src,
                msg.dst,
                msg.round,
                msg.frag,
                msg.buffers,
                msg.aux,
                booked.t_start,
                booked.t_end,
            )
            if self._hand_over(sockets[msg.dst], encode(stamped)):
                self.sent_since_flush.add(msg.dst)
                self.stats.sent_bytes[msg.dst] += booked.size
                self.stats.total_sent += booked.size
                self.stats.sent_messages += 1
            else:
                self._drop(msg, booked.size)

    def _hand_over(self, sock: zmq.Socket, frames: list) -> bool:
        """Give the frames to ZeroMQ, waiting (bounded, stoppable) if the peer is not draining."""
        while not self.stop.is_set():
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                self.stop.wait(0.005)
        return False


class Receiver(threading.Thread):
    """Owns the node's inbound PULL socket and its downlink; releases messages at delivery time.

    Messages wait in an emulated downlink queue (a heap by delivery time) bounded in bytes;
    a malformed, oversized, misaddressed or unknown-sender message is dropped and counted.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        node_id: int,
        bind: str,
        downlink: Downlink,
        clock: EmulatedClock | None,
        inbox: queue.Queue,
        stop: threading.Event,
        stats: LinkStats,
        max_message_bytes: int,
        max_pending_bytes: int = 256 * 1024 * 1024,
    ):
        super().__init__(name=f"receiver-{node_id}", daemon=True)
        self.ctx, self.node_id, self.bind_address = ctx, node_id, bind
        self.downlink, self.clock, self.inbox = downlink, clock, inbox
        self.stop, self.stats = stop, stats
        self.max_message_bytes, self.max_pending_bytes = max_message_bytes, max_pending_bytes
        self.known_sources: frozenset[int] | None = None
        self.endpoint: str | None = None
        self.bound = threading.Event()
        self.started_clock = threading.Event()
        self.error: BaseException | None = None
        self._pending: list[tuple[float, int, Message, int]] = []
        self._booked: dict[int, tuple[float, float]] = {}  # seq -> downlink (start, finish)
        self._released_finish = float("-inf")  # the downlink is busy until this for released ones
        self._pending_bytes = 0
        self._seq = itertools.count()

    def start_clock(self, clock: EmulatedClock, known_sources: frozenset[int]) -> None:
        """Called once by the runtime when the run's shared `t0` is known."""
        self.clock, self.known_sources = clock, known_sources
        self.started_clock.set()

    def run(self) -> None:
        sock = self.ctx.socket(zmq.PULL)
        try:
            sock.setsockopt(zmq.RCVHWM, RECV_HWM)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes + 64 * 1024)
            if self.bind_address.endswith(":0"):
                port = sock.bind_to_random_port(self.bind_address.rsplit(":", 1)[0])
                self.endpoint = f"{self.bind_address.rsplit(':', 1)[0]}:{port}"
            else:
                sock.bind(self.bind_address)
                self.endpoint = self.bind_address
            self.bound.set()
            while not self.stop.is_set() and not self.started_clock.wait(POLL_MS / 1000):
                pass
            self._loop(sock)
        except BaseException as exc:
            self.error = exc
            self.stop.set()
        finally:
            sock.close(linger=0)

    def _loop(self, sock: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not self.stop.is_set():
            timeout_ms = POLL_MS
            if self._pending:
                wait = self.clock.wall_until(self._pending[0][0]) * 1000
                timeout_ms = max(0, min(POLL_MS, int(wait)))
            if poller.poll(timeout_ms):
                for _ in range(RECV_HWM):
                    try:
                        frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._admit(frames)
            self._release()

    def _admit(self, frames: list) -> None:
        try:
            msg = decode(frames, self.max_message_bytes)
        except WireError:
            self.stats.malformed_messages += 1
            return
        if msg.dst != self.node_id or msg.src not in self.known_sources:
            self.stats.malformed_messages += 1
            return
        if msg.kind == FLUSH:
            self._flush(msg.src, msg.t_start)
            return
        size = sum(len(f.buffer) for f in frames)
        if self._pending_bytes + size > self.max_pending_bytes:
            self.stats.inbox_overflow_messages += 1
            return
        start, finish, deliver_at = self.downlink.book(size, msg.t_start, msg.t_end)
        seq = next(self._seq)
        heapq.heappush(self._pending, (deliver_at, seq, msg, size))
        self._booked[seq] = (start, finish)
        self._pending_bytes += size

    def _flush(self, src: int, at: float) -> None:
        """`src` flushed at `at`: what of its traffic was not delivered by then is lost, and
        what queued behind it in the downlink moves up into the share it frees."""
        cut = [e for e in self._pending if e[2].src == src and e[0] > at]
        if not cut:
            return
        for *_, size in cut:
            self._pending_bytes -= size
            self.stats.flushed_bytes[src] += size
            self.stats.total_flushed += size
            self.stats.flushed_messages += 1
        cut_seqs = {e[1] for e in cut}
        kept = [e for e in self._pending if e[1] not in cut_seqs]
        # The downlink stays as booked up to the flush; a message cut midway held it till then.
        busy_until = [self._released_finish]
        busy_until += [at for e in cut if self._booked[e[1]][0] < at]
        busy_until += [self._booked[e[1]][1] for e in kept if self._booked[e[1]][0] <= at]
        behind = sorted((e for e in kept if self._booked[e[1]][0] > at), key=lambda e: e[1])
        rebooked = self.downlink.rebook(
            [(size, msg.t_start, msg.t_end) for _, _, msg, size in behind], max(busy_until)
        )
        moved = {}
        for (_, seq, msg, size), (start, finish, deliver_at) in zip(behind, rebooked, strict=True):
            self._booked[seq] = (start, finish)
            moved[seq] = (deliver_at, seq, msg, size)
        for seq in cut_seqs:
            del self._booked[seq]
        self._pending = [moved.get(e[1], e) for e in kept]
        heapq.heapify(self._pending)

    def _release(self) -> None:
        now = self.clock.now()
        while self._pending and self._pending[0][0] <= now:
            deliver_at, seq, msg, size = heapq.heappop(self._pending)
            self._pending_bytes -= size
            self._released_finish = max(self._released_finish, self._booked.pop(seq)[1])
            lateness = now - deliver_at
            if lateness > LATE_AFTER:
                self.stats.late_deliveries += 1
            self.stats.max_delivery_lateness = max(self.stats.max_delivery_lateness, lateness)
            try:
                self.inbox.put_nowait(msg)
            except queue.Full:
                self.stats.inbox_overflow_messages += 1
                continue
            self.stats.delivered_bytes[msg.src] += size
            self.stats.total_delivered += size
            self.stats.delivered_messages += 1
