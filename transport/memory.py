"""The in-memory twin of the ZeroMQ transport, for tests: several nodes in one process, linked
through the same uplink and downlink schedules and the same wire codec, on a virtual clock that
moves only when every node waits. Deterministic: no sockets, no threads of its own, no sleeps."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from transport.clock.virtual import VirtualClock
from transport.dynamics import Reachability
from transport.link import INBOX_SIZE, MAX_PENDING_BYTES, LinkSpec, check_sendable
from transport.schedule import DownlinkQueue, Uplink
from transport.stats import LinkStats
from transport.wire import (
    DEFAULT_MAX_MESSAGE_BYTES,
    FLUSH,
    Message,
    WireError,
    check_kinds,
    decode,
    pack,
    stamp,
)


class MemoryNetwork:
    """The links between the nodes of one process; a source of the virtual clock."""

    def __init__(
        self,
        clock: VirtualClock,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        reach: Reachability | None = None,
    ):
        self.clock, self.max_message_bytes = clock, max_message_bytes
        self.reach = reach or Reachability()  # a scenario's who-reaches-whom, for every node
        self.lock = threading.Lock()
        self.nodes: dict[int, MemoryTransport] = {}
        clock.add_source(self)

    def transport(
        self, node_id: int, link: LinkSpec, kinds: frozenset[str], stop: threading.Event
    ) -> MemoryTransport:
        return MemoryTransport(self, node_id, link, kinds, stop)

    def next_due(self) -> float:
        with self.lock:
            due = [float("inf")]
            for node in self.nodes.values():
                due += [node.downlink.next_due(), float("-inf") if node.handed else float("inf")]
            return min(due)

    def advance(self, now: float) -> None:
        """Hand over what has crossed its links and deliver what is due, in node-id order."""
        with self.lock:
            for node_id in sorted(self.nodes):
                self.nodes[node_id].hand_over_due(now)
            for node_id in sorted(self.nodes):
                self.nodes[node_id].release(now)

    def deliver(self, dst: int, frames: list) -> None:
        node = self.nodes.get(dst)
        if node is not None and not node.closed:
            node.admit(frames)


class MemoryTransport:
    """One node's end of a `MemoryNetwork`, with the interface of `ZmqTransport`."""

    def __init__(
        self,
        network: MemoryNetwork,
        node_id: int,
        link: LinkSpec,
        kinds: frozenset[str],
        stop: threading.Event,
    ):
        self.network, self.node_id, self.link, self.stop = network, node_id, link, stop
        self.kinds = check_kinds(kinds)
        self.stats = LinkStats()
        self.inbox: deque[Message] = deque()
        self.downlink = DownlinkQueue(
            link.downlink(network.clock.now),
            self.stats,
            MAX_PENDING_BYTES,
            network.reach,
            node_id,
        )
        self.uplink: Uplink | None = None
        # Handed over (and counted sent) but not yet admitted by the receiver: (destination,
        # frames), in order; admitted when the clock next steps, so that what several nodes
        # send at one instant reaches each receiver in node-id order, whatever the threads did.
        self.handed: list[tuple[int, list]] = []
        self.peers: frozenset[int] = frozenset()
        self.responder: Callable[[Message], Sequence[Message]] | None = None
        self.closed = False

    def bind(self) -> str:
        with self.network.lock:
            self.network.nodes[self.node_id] = self
        return f"memory://{self.node_id}"

    def connect(self, peers: dict[int, str]) -> None:
        self.peers = frozenset(p for p in peers if p != self.node_id)
        egress = self.link.egress(sorted(self.peers), self.network.clock.now)
        self.uplink = Uplink(egress, self.stats, reach=self.network.reach, node_id=self.node_id)

    def start(self, clock: VirtualClock) -> None:
        if clock is not self.network.clock:
            raise ValueError("a memory transport runs on its network's clock")

    def respond_with(self, responder: Callable[[Message], Sequence[Message]]) -> None:
        self.responder = responder

    def depart(self, peer: int) -> None:
        """Nothing to give up: a message to a closed node is never delivered."""

    def send(self, messages: Sequence[Message], replace: bool = False) -> bool:
        with self.network.lock:
            self._send(messages, replace, self.network.clock.now())
        return True

    def _send(self, messages: Sequence[Message], replace: bool, now: float) -> None:
        checked = (check_sendable(m, self.node_id, self.kinds, self.peers) for m in messages)
        notify, bookings = self.uplink.take(tuple(pack(m) for m in checked), replace, now)
        for dst in notify:  # before the new batch, as the ZeroMQ sender does
            notice = Message(FLUSH, self.node_id, dst, -1, 0, (), {}, now, now)
            self.handed.append((dst, stamp(pack(notice), now, now)))
        for booked in bookings:
            frames = stamp(booked.packed, booked.t_start, booked.t_end)
            self.handed.append((booked.packed.dst, frames))

    def hand_over_due(self, now: float) -> None:
        """Admit what this node handed over. A message to a closed node was sent (its bytes
        left) and is never delivered."""
        if self.uplink is not None:
            self.uplink.settle(now)
        handed, self.handed = self.handed, []
        for dst, frames in handed:
            self.network.deliver(dst, frames)

    def admit(self, frames: list) -> None:
        try:
            msg = decode(frames, self.kinds | {FLUSH}, self.network.max_message_bytes)
        except WireError:
            self.stats.malformed_messages += 1
            return
        if msg.dst != self.node_id or msg.src not in self.peers:
            self.stats.malformed_messages += 1
        elif msg.kind == FLUSH:
            self.downlink.flush(msg.src, msg.t_start)
        else:
            self.downlink.admit(msg, sum(memoryview(f).nbytes for f in frames))

    def release(self, now: float) -> None:
        for msg, size in self.downlink.release(now, late_after=0.0):
            if self.responder is not None:
                replies = self.responder(msg)
                if replies:
                    self._send(replies, False, now)  # at the delivery instant
            if len(self.inbox) >= INBOX_SIZE:
                self.stats.inbox_overflow_messages += 1
                continue
            self.inbox.append(msg)
            self.stats.count_delivered(msg.src, size)

    def receive(self, until: float | None = None) -> Message | None:
        with self.network.lock:
            if self.inbox:
                return self.inbox.popleft()
        if until is None:
            return None
        self.network.clock.wait(until, ready=lambda: bool(self.inbox), stop=self.stop)
        with self.network.lock:
            return self.inbox.popleft() if self.inbox else None

    def errors(self) -> list[str]:
        return []

    def close(self) -> None:
        self.closed = True
