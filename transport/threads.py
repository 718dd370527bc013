"""The two threads of a node's ZeroMQ transport, each the sole owner of its sockets: the sender
hands messages over when the uplink schedule says they have crossed, the receiver admits what
arrives into the downlink queue and releases it at its delivery instant."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import zmq

from transport.clock import EmulatedClock
from transport.connections import Connections
from transport.schedule import DownlinkQueue, PackedBatch, Uplink
from transport.security import MONITORED, CurveKeys, refusals, secure_client, secure_server
from transport.stats import LinkStats
from transport.wire import FLUSH, Message, WireError, decode, pack, stamp

# Messages wait in ZeroMQ ahead of their emulated instants (the stamps carry the timing), so
# a batch must fit: at the worst every message of a round to one peer.
SEND_HWM = 10_000
RECV_HWM = 10_000
RECV_BATCH = 256  # frames admitted per wake-up before the stop flag is looked at again
# The longest a thread sleeps with nothing due: how soon it notices `stop`. Every wake-up of
# an idle thread costs its process CPU and the training thread the GIL, times 60 processes.
IDLE_S = 0.5
# A delivery released this many emulated seconds after its time counts as late.
LATE_AFTER = 0.005
# A peer that takes nothing for this long (wall seconds) is gone: a process dead without
# notice. What is for it is lost, counted, at once, until it is tried again after GONE_RETRY.
HAND_OVER_TIMEOUT = 2.0
GONE_RETRY = 10.0


class SenderThread(threading.Thread):
    """Owns one PUSH socket per peer (`Connections`: at most `max_connections` open); books
    each batch from the outbox on the uplink schedule and hands every message of it to ZeroMQ
    at once, stamped with the emulated instants it leaves (the receiver delivers it at its
    instant): one wake-up per batch."""

    def __init__(
        self,
        ctx: zmq.Context,
        node_id: int,
        peers: dict[int, str],
        uplink: Uplink,
        outbox: queue.Queue,
        stop: threading.Event,
        max_connections: int,
        curve: CurveKeys | None = None,
    ):
        super().__init__(name=f"sender-{node_id}", daemon=True)
        self.ctx, self.node_id, self.peers, self.curve = ctx, node_id, peers, curve
        self.max_connections = max_connections
        self.connections: Connections | None = None
        self.uplink, self.outbox, self.stop = uplink, outbox, stop
        self.clock: EmulatedClock | None = None
        self.error: BaseException | None = None
        self.connected = threading.Event()
        self.started_clock = threading.Event()
        self.gone: dict[int, tuple[float, float]] = {}  # peer -> when found gone: wall, emulated

    def start_clock(self, clock: EmulatedClock) -> None:
        self.clock = clock
        self.started_clock.set()

    def _open_socket(self, endpoint: str, eager: bool) -> zmq.Socket:
        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.setsockopt(zmq.LINGER, 0)
        # Opened long before t0, a socket queues only to a live connection; opened on first
        # use, the message must not wait for the connection's handshake.
        sock.setsockopt(zmq.IMMEDIATE, 1 if eager else 0)
        if self.curve is not None:
            secure_client(sock, self.curve)
        sock.connect(endpoint)
        return sock

    def run(self) -> None:
        sockets = None
        try:
            # Connect long before t0: 60 nodes opening 59 connections each is a storm of its own.
            sockets = Connections(
                self.peers, self._open_socket, self.max_connections, self.uplink.stats
            )
            self.connections = sockets
            self.connected.set()
            while not self.stop.is_set() and not self.started_clock.wait(IDLE_S):
                pass
            self._loop(sockets)
        except BaseException as exc:  # reported by the node, never swallowed
            self.error = exc
            self.stop.set()
        finally:
            if sockets is not None:
                sockets.close()

    def _loop(self, sockets: Connections) -> None:
        while not self.stop.is_set():
            try:
                batch: PackedBatch | None = self.outbox.get(timeout=IDLE_S)
            except queue.Empty:
                batch = None
            now = self.clock.now()
            if batch is None:
                self.uplink.settle(now)
                continue
            notify, bookings = self.uplink.take(batch.messages, batch.replace, now)
            # The flush notices first: a receiver must not cut this batch with the old one.
            for dst in notify:
                notice = Message(FLUSH, self.node_id, dst, -1, 0, (), {}, now, now)
                self._hand_over(sockets, dst, stamp(pack(notice), now, now))
            for booked in bookings:
                frames = stamp(booked.packed, booked.t_start, booked.t_end)
                handed = self._hand_over(sockets, booked.packed.dst, frames)
                if handed is not True:
                    self.uplink.lost(booked, handed)

    def _hand_over(self, sockets: Connections, dst: int, frames: list) -> bool | str:
        """Give the frames to ZeroMQ, waiting (bounded, stoppable) if the peer is not draining:
        True, or why not: "stopped" (this node is), "gone" (the peer took nothing for
        HAND_OVER_TIMEOUT: dead without notice; no wait for it again for GONE_RETRY)."""
        found_gone = self.gone.get(dst)
        if found_gone is not None:
            wall, emulated = found_gone
            # Tried again after GONE_RETRY, or as soon as a scenario brought it back
            back = (self.uplink.reach.up_since(dst, self.clock.now()) or 0.0) > emulated
            if time.monotonic() - wall < GONE_RETRY and not back:
                return "gone"
            del self.gone[dst]
        sock, give_up = sockets.get(dst), time.monotonic() + HAND_OVER_TIMEOUT
        while not self.stop.is_set():
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                if time.monotonic() > give_up:
                    self.gone[dst] = (time.monotonic(), self.clock.now())
                    return "gone"
                self.stop.wait(0.005)
        return "stopped"


class ReceiverThread(threading.Thread):
    """Owns the node's inbound PULL socket and admits valid messages into the downlink queue
    (`arrived` guards it and is notified at every admission). A malformed, oversized,
    misaddressed, undeclared-kind or unknown-sender message is dropped and counted.

    With `on_deliver` set (an answer is due at receipt), it also wakes at every delivery
    instant and releases the message into the inbox there. Without, it sleeps until frames
    arrive, and the training thread takes what is due when it looks (`ZmqTransport.receive`):
    the same messages at the same emulated instants, without a wake-up per message, which
    costs the computing processes CPU and the GIL. A message that arrives after the training
    thread already took what was due by an instant it could have been delivered at, missed
    that look: it counts as a late delivery."""

    def __init__(
        self,
        ctx: zmq.Context,
        node_id: int,
        bind: str,
        downlink: DownlinkQueue,
        kinds: frozenset[str],
        inbox: queue.Queue,
        stop: threading.Event,
        stats: LinkStats,
        max_message_bytes: int,
        curve: CurveKeys | None = None,
    ):
        super().__init__(name=f"receiver-{node_id}", daemon=True)
        self.ctx, self.node_id, self.bind_address, self.curve = ctx, node_id, bind, curve
        self.downlink, self.kinds, self.inbox = downlink, kinds, inbox
        self.stop, self.stats, self.max_message_bytes = stop, stats, max_message_bytes
        self.clock: EmulatedClock | None = None
        self.known_sources: frozenset[int] = frozenset()
        self.on_deliver: Callable[[Message], None] | None = None  # runs before the inbox
        self.arrived = threading.Condition()
        self.drained_until = float("-inf")  # emulated: the training thread took all due by
        self.endpoint: str | None = None
        self.error: BaseException | None = None
        self.bound = threading.Event()
        self.started_clock = threading.Event()

    def start_clock(self, clock: EmulatedClock, known_sources: frozenset[int]) -> None:
        self.clock, self.known_sources = clock, known_sources
        self.started_clock.set()

    def run(self) -> None:
        sock, monitor = self.ctx.socket(zmq.PULL), None
        try:
            sock.setsockopt(zmq.RCVHWM, RECV_HWM)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes + 64 * 1024)
            if self.curve is not None:
                secure_server(sock, self.curve)
                monitor = sock.get_monitor_socket(MONITORED)  # refused handshakes, counted
            if self.bind_address.endswith(":0"):
                port = sock.bind_to_random_port(self.bind_address.rsplit(":", 1)[0])
                self.endpoint = f"{self.bind_address.rsplit(':', 1)[0]}:{port}"
            else:
                sock.bind(self.bind_address)
                self.endpoint = self.bind_address
            self.bound.set()
            while not self.stop.is_set() and not self.started_clock.wait(IDLE_S):
                pass
            self._loop(sock, monitor)
        except BaseException as exc:
            self.error = exc
            self.stop.set()
        finally:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(linger=0)
            sock.close(linger=0)

    def _loop(self, sock: zmq.Socket, monitor: zmq.Socket | None) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        timed = self.on_deliver is not None
        while not self.stop.is_set():
            wait_ms = IDLE_S * 1000
            if timed:
                wait_ms = min(wait_ms, self.clock.wall_until(self.downlink.next_due()) * 1000)
            ready = dict(poller.poll(max(0, int(wait_ms))))
            if monitor is not None and monitor in ready:
                self._count_refused(monitor)
            if sock in ready:
                with self.arrived:
                    for _ in range(RECV_BATCH):
                        try:
                            frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._admit(frames, timed)
                    self.arrived.notify_all()
            if timed:
                self._release()

    def _count_refused(self, monitor: zmq.Socket) -> None:
        """A peer without the run's key tried to connect: its handshake failed, nothing of it
        was delivered."""
        self.stats.refused_handshakes += refusals(monitor)

    def _release(self) -> None:
        with self.arrived:
            released = self.downlink.release(self.clock.now(), LATE_AFTER)
        for msg, size in released:
            self.on_deliver(msg)
            try:
                self.inbox.put_nowait(msg)
            except queue.Full:
                self.stats.inbox_overflow_messages += 1
                continue
            self.stats.count_delivered(msg.src, size)

    def _admit(self, frames: list, timed: bool) -> None:
        try:
            msg = decode(frames, self.kinds, self.max_message_bytes)
        except WireError:
            self.stats.malformed_messages += 1
            return
        if msg.dst != self.node_id or msg.src not in self.known_sources:
            self.stats.malformed_messages += 1
            return
        if msg.kind == FLUSH:
            self.downlink.flush(msg.src, msg.t_start)
            return
        # Untimed, the training thread releases what is due when it looks (`drained_until`).
        drained_until = None if timed else self.drained_until
        self.downlink.admit(msg, sum(len(f.buffer) for f in frames), drained_until)
