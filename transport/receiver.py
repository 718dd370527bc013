"""A node's receiver thread on dilated wall time, sole owner of its inbound socket: it admits what
arrives into the downlink queue and, with answers due at delivery, releases it at its delivery
instant; and what every receiver does (in virtual time the training thread itself)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import zmq

from transport.clock import Clock
from transport.link import IDLE_S
from transport.schedule import DownlinkQueue
from transport.security import MONITORED, CurveKeys, refusals, secure_server
from transport.stats import LinkStats
from transport.wire import FLUSH, Message, WireError, decode

RECV_HWM = 10_000
RECV_BATCH = 256  # frames admitted per wake-up before the stop flag is looked at again
# A delivery released this many emulated seconds after its time counts as late.
LATE_AFTER = 0.005


def inbound_socket(
    ctx: zmq.Context, bind_address: str, max_message_bytes: int, curve: CurveKeys | None
) -> tuple[zmq.Socket, zmq.Socket | None, str]:
    """A node's PULL socket bound at `bind_address` (port 0: any free port), its monitor of
    refused CURVE handshakes (None without CURVE), and its endpoint."""
    sock, monitor = ctx.socket(zmq.PULL), None
    try:
        sock.setsockopt(zmq.RCVHWM, RECV_HWM)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes + 64 * 1024)
        if curve is not None:
            secure_server(sock, curve)
            monitor = sock.get_monitor_socket(MONITORED)  # refused handshakes, counted
        if bind_address.endswith(":0"):
            host = bind_address.rsplit(":", 1)[0]
            endpoint = f"{host}:{sock.bind_to_random_port(host)}"
        else:
            sock.bind(bind_address)
            endpoint = bind_address
    except BaseException:
        close_inbound(sock, monitor)
        raise
    return sock, monitor, endpoint


def close_inbound(sock: zmq.Socket | None, monitor: zmq.Socket | None) -> None:
    if sock is None:
        return
    if monitor is not None:
        sock.disable_monitor()
        monitor.close(linger=0)
    sock.close(linger=0)


def admissible(
    frames: list,
    kinds: frozenset[str],
    max_message_bytes: int,
    node_id: int,
    known_sources: frozenset[int],
    stats: LinkStats,
) -> Message | None:
    """The message in `frames` if it is well formed, of a declared kind, addressed to this node
    and from a known source; else None, counted as malformed."""
    try:
        msg = decode(frames, kinds, max_message_bytes)
    except WireError:
        stats.malformed_messages += 1
        return None
    if msg.dst != node_id or msg.src not in known_sources:
        stats.malformed_messages += 1
        return None
    return msg


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
        self.clock: Clock | None = None
        self.known_sources: frozenset[int] = frozenset()
        self.on_deliver: Callable[[Message], None] | None = None  # runs before the inbox
        self.arrived = threading.Condition()
        self.drained_until = float("-inf")  # emulated: the training thread took all due by
        self.endpoint: str | None = None
        self.error: BaseException | None = None
        self.bound = threading.Event()
        self.started_clock = threading.Event()

    def start_clock(self, clock: Clock, known_sources: frozenset[int]) -> None:
        self.clock, self.known_sources = clock, known_sources
        self.started_clock.set()

    def run(self) -> None:
        sock, monitor = None, None
        try:
            sock, monitor, self.endpoint = inbound_socket(
                self.ctx, self.bind_address, self.max_message_bytes, self.curve
            )
            self.bound.set()
            while not self.stop.is_set() and not self.started_clock.wait(IDLE_S):
                pass
            self._loop(sock, monitor)
        except BaseException as exc:
            self.error = exc
            self.stop.set()
        finally:
            close_inbound(sock, monitor)

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
        msg = admissible(
            frames,
            self.kinds,
            self.max_message_bytes,
            self.node_id,
            self.known_sources,
            self.stats,
        )
        if msg is None:
            return
        if msg.kind == FLUSH:
            self.downlink.flush(msg.src, msg.t_start)
            return
        # Untimed, the training thread releases what is due when it looks (`drained_until`).
        drained_until = None if timed else self.drained_until
        self.downlink.admit(msg, sum(len(f.buffer) for f in frames), drained_until)
