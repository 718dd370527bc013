"""A node's receiver thread, sole owner of its inbound socket: it admits what arrives into the
downlink queue (in virtual time it stages it, stamped, until the keeper's next ADVANCE) and,
on dilated wall time with answers due at delivery, releases it at its delivery instant."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import zmq

from transport.clock import Clock
from transport.clock.keeper_link import ORDER
from transport.link import IDLE_S
from transport.schedule import DownlinkQueue
from transport.security import MONITORED, CurveKeys, refusals, secure_server
from transport.stats import LinkStats
from transport.wire import FLUSH, Message, WireError, decode

RECV_HWM = 10_000
RECV_BATCH = 256  # frames admitted per wake-up before the stop flag is looked at again
# A delivery released this many emulated seconds after its time counts as late.
LATE_AFTER = 0.005


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
        self.virtual = False
        # In virtual time: (gen, src, seq, message, size) admitted, not yet handed to the
        # downlink, and how many were admitted in all; both guarded by `arrived`.
        self.staged: list[tuple[int, int, int, Message, int]] = []
        self.admitted = 0
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
        self.virtual = clock.virtual
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
        order = None
        if self.virtual:
            if len(frames) < 2 or len(frames[0].buffer) != ORDER.size:
                self.stats.malformed_messages += 1
                return
            order, frames = ORDER.unpack(frames[0].buffer), frames[1:]
        try:
            msg = decode(frames, self.kinds, self.max_message_bytes)
        except WireError:
            self.stats.malformed_messages += 1
            return
        if msg.dst != self.node_id or msg.src not in self.known_sources:
            self.stats.malformed_messages += 1
            return
        if order is not None:  # handed to the downlink at the keeper's next ADVANCE
            size = sum(len(f.buffer) for f in frames)
            self.staged.append((order[0], msg.src, order[1], msg, size))
            self.admitted += 1
            return
        if msg.kind == FLUSH:
            self.downlink.flush(msg.src, msg.t_start)
            return
        # Untimed, the training thread releases what is due when it looks (`drained_until`).
        drained_until = None if timed else self.drained_until
        self.downlink.admit(msg, sum(len(f.buffer) for f in frames), drained_until)
