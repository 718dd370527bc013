"""A node's sender thread on dilated wall time, sole owner of its outbound sockets: it books each
batch on the uplink schedule and hands its messages over, stamped with the emulated instants
they leave; and what every sender does (in virtual time the training thread itself)."""

from __future__ import annotations

import queue
import threading
import time

import zmq

from transport.clock import Clock
from transport.connections import Connections
from transport.link import IDLE_S
from transport.schedule import PackedBatch, Uplink
from transport.security import CurveKeys, secure_client
from transport.wire import FLUSH, Message, pack, stamp

# Messages wait in ZeroMQ ahead of their emulated instants (the stamps carry the timing), so
# a batch must fit: at the worst every message of a round to one peer.
SEND_HWM = 10_000
# A peer that takes nothing for this long (wall seconds) is gone: a process dead without
# notice. What is for it is lost, counted, at once, until it is tried again after GONE_RETRY.
HAND_OVER_TIMEOUT = 2.0
GONE_RETRY = 10.0


def outbound_socket(
    ctx: zmq.Context, endpoint: str, eager: bool, curve: CurveKeys | None
) -> zmq.Socket:
    """A PUSH socket to one peer. Opened long before t0 (`eager`), it queues only to a live
    connection; opened on first use, the message must not wait for the connection's
    handshake."""
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1 if eager else 0)
    if curve is not None:
        secure_client(sock, curve)
    sock.connect(endpoint)
    return sock


def flush_notice(node_id: int, dst: int, now: float) -> list:
    """The frames telling `dst` that this node flushed at `now` (see DownlinkQueue.flush)."""
    return stamp(pack(Message(FLUSH, node_id, dst, -1, 0, (), {}, now, now)), now, now)


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
        self.clock: Clock | None = None
        self.error: BaseException | None = None
        self.connected = threading.Event()
        self.started_clock = threading.Event()
        self.gone: dict[int, tuple[float, float]] = {}  # peer -> when found gone: wall, emulated

    def start_clock(self, clock: Clock) -> None:
        self.clock = clock
        self.started_clock.set()

    def _open_socket(self, endpoint: str, eager: bool) -> zmq.Socket:
        return outbound_socket(self.ctx, endpoint, eager, self.curve)

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
                self._hand_over(sockets, dst, flush_notice(self.node_id, dst, now))
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
