"""One node's ZeroMQ transport on dilated wall time: the context, the sender and receiver threads,
the shaped links, message packing and the byte counters behind one small object. (In virtual
time a node uses `VirtualZmqTransport`, which needs no threads: zmq_virtual.py.)"""

from __future__ import annotations

import math
import queue
from collections.abc import Callable, Sequence

import zmq

from transport.clock import Clock
from transport.link import (
    IDLE_S,
    INBOX_SIZE,
    MAX_PENDING_BYTES,
    OUTBOX_SIZE,
    check_sendable,
)
from transport.receiver import ReceiverThread
from transport.schedule import DownlinkQueue, PackedBatch, Uplink
from transport.security import start_authenticator
from transport.sender import SenderThread
from transport.wire import (
    FLUSH,
    Message,
    pack,
    wire_size,
)
from transport.zmq_base import ZmqEndpoint


class ZmqTransport(ZmqEndpoint):
    """`bind` starts the receiver thread on `bind_address` (port 0: any free port), `connect`
    the sender thread with one PUSH socket per peer, `start` arms both on the shared clock.
    Every socket lives and dies in its owner thread; `close` joins both before terminating
    the context, so a thread stuck on a socket can never hang the process in `term()`."""

    def __init__(self, *args, **kwargs):  # ZmqEndpoint's: node, link, kinds, stop, options
        super().__init__(*args, **kwargs)
        self.inbox: queue.Queue[Message] = queue.Queue(maxsize=INBOX_SIZE)
        self.outbox: queue.Queue[PackedBatch] = queue.Queue(maxsize=OUTBOX_SIZE)
        self.sender: SenderThread | None = None
        self.receiver: ReceiverThread | None = None

    def _now(self) -> float:
        return self.clock.now()

    def bind(self) -> str:
        self.ctx = zmq.Context(io_threads=1)
        if self.curve is not None:
            self.authenticator = start_authenticator(self.ctx, self.curve)
        self.downlink = DownlinkQueue(
            self.link.downlink(self._now), self.stats, MAX_PENDING_BYTES, self.reach, self.node_id
        )
        self.receiver = ReceiverThread(
            self.ctx,
            self.node_id,
            self.bind_address,
            self.downlink,
            self.kinds | {FLUSH},
            self.inbox,
            self.stop,
            self.stats,
            self.max_message_bytes,
            self.curve,
        )
        self.receiver.start()
        if not self.receiver.bound.wait(10.0) or self.receiver.endpoint is None:
            raise RuntimeError(
                f"node {self.node_id}: inbound socket did not bind: {self.receiver.error}"
            )
        return self.receiver.endpoint

    def connect(self, peers: dict[int, str]) -> None:
        self.peers = {p: ep for p, ep in peers.items() if p != self.node_id}
        egress = self.link.egress(list(self.peers), self._now)
        uplink = Uplink(egress, self.stats, reach=self.reach, node_id=self.node_id)
        self.sender = SenderThread(
            self.ctx,
            self.node_id,
            self.peers,
            uplink,
            self.outbox,
            self.stop,
            self.max_connections,
            self.curve,
        )
        self.sender.start()
        if not self.sender.connected.wait(30.0):
            raise RuntimeError(f"node {self.node_id}: could not connect: {self.sender.error}")

    def start(self, clock: Clock) -> None:
        self.clock = clock
        self.sender.start_clock(clock)
        self.receiver.start_clock(clock, frozenset(self.peers))

    def respond_with(self, responder: Callable[[Message], Sequence[Message]]) -> None:
        """Answers leave from the receiver thread at the delivery instant: never held back
        by what the training thread is computing."""

        def on_deliver(msg: Message) -> None:
            replies = responder(msg)
            if replies and not self.send(replies, block=False):
                for reply in replies:
                    self.stats.count_dropped(reply.dst, wire_size(reply))

        self.receiver.on_deliver = on_deliver

    def depart(self, peer: int) -> None:
        """Given up for good: the sender waits for it no more (a dict item set in one step)."""
        if self.sender is not None:
            self.sender.gone[peer] = (math.inf, math.inf)

    def send(self, messages: Sequence[Message], replace: bool = False, block: bool = True) -> bool:
        packed = tuple(
            pack(check_sendable(m, self.node_id, self.kinds, self.peers)) for m in messages
        )
        try:
            self.outbox.put(PackedBatch(packed, replace), timeout=1.0 if block else 0)
        except queue.Full:
            return False
        return True

    def receive(self, until: float | None = None) -> Message | None:
        if self.receiver.on_deliver is None:
            return self._take_due(until)
        if until is None:
            try:
                return self.inbox.get_nowait()
            except queue.Empty:
                return None
        while not self.stop.is_set():
            wait = self.clock.wall_until(until)
            try:
                return self.inbox.get(timeout=max(0.0, min(wait, IDLE_S)))
            except queue.Empty:
                if wait <= 0:
                    return None
        return None

    def _take_due(self, until: float | None) -> Message | None:
        """The next message due by now, released by this (the training) thread; waits for
        one until `until`, woken by every admission."""
        arrived = self.receiver.arrived
        with arrived:
            while True:
                if not self.ready:
                    now = self.clock.now()
                    for msg, size in self.downlink.release(now):
                        self.ready.append(msg)
                        self.stats.count_delivered(msg.src, size)
                    self.receiver.drained_until = now
                if self.ready:
                    return self.ready.popleft()
                left = self.clock.wall_until(until) if until is not None else 0.0
                if left <= 0 or self.stop.is_set():
                    return None
                due = self.clock.wall_until(self.downlink.next_due())
                arrived.wait(max(0.0, min(left, due, IDLE_S)))

    def errors(self) -> list[str]:
        return [str(t.error) for t in (self.sender, self.receiver) if t and t.error]

    def close(self) -> None:
        """Stop the threads, close sockets in their owner threads, then terminate the context."""
        self.stop.set()
        threads = [t for t in (self.sender, self.receiver) if t is not None]
        for thread in threads:
            thread.join(timeout=5.0)
        if self.authenticator is not None:
            self.authenticator.stop()  # joins its thread, closing its socket
        # term() waits for every socket to close; a thread that never exited would hang it.
        if self.ctx is not None and not any(t.is_alive() for t in threads):
            self.ctx.term()
