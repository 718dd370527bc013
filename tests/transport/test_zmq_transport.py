"""The ZeroMQ transport for real: threads, sockets and OS processes; shaped rate, drop policy,
bad input, and closing cleanly."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest
import zmq

from bench.links import send_shaped
from transport import DilatedClock, LinkSpec, Message, WireError, ZmqTransport, wire_size
from transport.sender import HAND_OVER_TIMEOUT
from transport.wire import encode

pytestmark = pytest.mark.process
KINDS = frozenset({"fragment", "model"})
FAST = 1e9 / 1e6  # Mbit/s


def _link(up_mbps=FAST, down_mbps=FAST, latency_ms=1.0, paths=None):
    return LinkSpec(up_mbps=up_mbps, down_mbps=down_mbps, latency_ms=latency_ms, paths=paths or {})


class Pair:
    """Transports for node 0 (sending) and any receivers, on one clock, closed at the end."""

    def __init__(self, clock, sender_link, receiver_links, max_connections=64):
        self.clock, self.stops = clock, []
        self.receivers = {}
        for node, link in receiver_links.items():
            self.receivers[node] = self._transport(node, link)
        endpoints = {node: rx.bind() for node, rx in self.receivers.items()}
        self.sender = self._transport(0, sender_link, max_connections)
        self.sender.bind()
        self.sender.connect(endpoints)
        for rx in self.receivers.values():
            rx.connect({0: "tcp://127.0.0.1:1"})  # never sent to: a peer it accepts from
        for transport in (self.sender, *self.receivers.values()):
            transport.start(clock)

    def _transport(self, node, link, max_connections=64):
        stop = threading.Event()
        self.stops.append(stop)
        return ZmqTransport(node, link, KINDS, stop, max_connections=max_connections)

    def collect(self, node, count, timeout=10.0, since=0.0):
        """(round, emulated arrival - since) of up to `count` messages delivered to `node`."""
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            msg = self.receivers[node].receive(until=self.clock.now() + 0.1)
            if msg is not None:
                got.append((msg.round, self.clock.now() - since))
        return got

    def close(self):
        for transport in (self.sender, *self.receivers.values()):
            transport.close()


def _send_process(link, endpoint, t0, count, size, done):
    """A separate OS process: one transport pushing `count` messages through its uplink."""
    done.value = send_shaped(link, endpoint, t0, count, size, timeout=60)


@pytest.mark.parametrize("rate_mbps", [2.0, 20.0])
def test_two_processes_deliver_within_two_percent_of_the_configured_rate(rate_mbps):
    count, size = 120, 20_000
    clock = DilatedClock(time.monotonic() + 0.5, 1.0)
    stop = threading.Event()
    # The downlink is 10x faster, so the uplink alone sets the pace.
    rx = ZmqTransport(1, _link(down_mbps=rate_mbps * 10), KINDS, stop)
    done = mp.get_context("spawn").Value("i", 0)
    proc = None
    try:
        endpoint = rx.bind()
        rx.connect({0: "tcp://127.0.0.1:1"})
        rx.start(clock)
        proc = mp.get_context("spawn").Process(
            target=_send_process,
            args=(_link(up_mbps=rate_mbps), endpoint, clock.t0, count, size, done),
        )
        proc.start()
        times, deadline = [], time.monotonic() + 60
        while len(times) < count and time.monotonic() < deadline:
            if rx.receive(until=clock.now() + 1.0) is not None:
                times.append(clock.now())
        proc.join(30)
    finally:
        rx.close()
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)
    assert len(times) == count and done.value == count and rx.stats.malformed_messages == 0
    msg_bytes = rx.stats.total_delivered / count
    measured = (count - 1) * msg_bytes * 8 / (times[-1] - times[0])
    assert measured == pytest.approx(rate_mbps * 1e6, rel=0.02)


def test_replace_drops_everything_unsent_and_counts_it():
    clock = DilatedClock(time.monotonic(), 1.0)
    # 1 MB/s: each 50 kB message holds the wire for 50 ms
    pair = Pair(clock, _link(up_mbps=8.0), {1: _link()})
    payload = np.zeros(12_500, dtype=np.float32)
    old = [Message("fragment", 0, 1, 0, i, (payload,)) for i in range(10)]
    stats = pair.sender.stats
    try:
        pair.sender.send(old)
        time.sleep(0.12)  # about two sent, the third on the wire
        pair.sender.send([Message("fragment", 0, 1, 1, i, (payload,)) for i in range(2)], True)
        deadline = time.monotonic() + 10
        while stats.sent_messages + stats.dropped_messages < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        rounds = [r for r, _ in pair.collect(1, stats.sent_messages, timeout=5)]
    finally:
        pair.close()
    size = wire_size(old[0])
    assert stats.sent_messages + stats.dropped_messages == 12
    assert 1 <= stats.sent_messages - 2 <= 3  # the two new ones, after one to three old ones
    assert stats.dropped_messages >= 7
    assert stats.total_dropped == stats.dropped_messages * size
    assert rounds[-2:] == [1, 1] and set(rounds[:-2]) == {0}


def test_malformed_misaddressed_and_undeclared_messages_are_dropped_and_counted(zmq_context):
    clock = DilatedClock(time.monotonic(), 1.0)
    stop = threading.Event()
    rx = ZmqTransport(1, _link(), KINDS, stop)
    push = zmq_context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    try:
        push.connect(rx.bind())
        rx.connect({0: "tcp://127.0.0.1:1"})
        rx.start(clock)
        import pickle

        push.send(pickle.dumps({"CHANNEL": "model"}))
        push.send_multipart([b"\x81\xa1v\x01", b"garbage"])
        push.send_multipart(encode(Message("model", 0, 2, 0, 0, ())))  # not for node 1
        push.send_multipart(encode(Message("model", 5, 1, 0, 0, ())))  # unknown sender
        push.send_multipart(encode(Message("ping", 0, 1, 0, 0, ())))  # a kind not declared
        push.send_multipart(encode(Message("model", 0, 1, 0, 0, (np.ones(3, np.float32),))))
        got = rx.receive(until=clock.now() + 5)
    finally:
        rx.close()
        push.close(linger=0)
    assert got.src == 0 and got.buffers[0].tolist() == [1.0, 1.0, 1.0]
    assert rx.stats.malformed_messages == 5 and rx.stats.delivered_messages == 1


def test_sending_an_undeclared_kind_or_to_a_stranger_raises_in_the_caller():
    clock = DilatedClock(time.monotonic(), 1.0)
    pair = Pair(clock, _link(), {1: _link()})
    try:
        with pytest.raises(WireError, match="not declared"):
            pair.sender.send([Message("gossip", 0, 1, 0, 0, ())])
        with pytest.raises(WireError, match="cannot send"):
            pair.sender.send([Message("model", 0, 7, 0, 0, ())])
        assert pair.sender.errors() == []
    finally:
        pair.close()


def test_messages_to_a_slow_path_arrive_later_than_to_a_fast_one():
    clock = DilatedClock(time.monotonic(), 1.0)
    # A fast uplink (80 Mbit/s, ~1 ms per message) and paths of 0.8 and 8 Mbit/s:
    # ~10 kB takes ~100 ms on the slow path and ~10 ms on the fast one.
    pair = Pair(clock, _link(up_mbps=80.0, paths={1: 0.8, 2: 8.0}), {1: _link(), 2: _link()})
    payload = np.zeros(2_500, dtype=np.float32)
    batch = [Message("fragment", 0, 1 + i % 2, 0, i, (payload,)) for i in range(6)]
    size = wire_size(batch[0])
    try:
        queued = clock.now()
        pair.sender.send(batch)
        fast = [t for _, t in pair.collect(2, 3, since=queued)]
        slow = [t for _, t in pair.collect(1, 3, since=queued)]
    finally:
        pair.close()
    assert len(slow) == 3 and len(fast) == 3
    slow_each, fast_each = size * 8 / 0.8e6, size * 8 / 8e6
    # FIFO on the slow path: the k-th message lands after k slow transfers (+ 1 ms latency).
    for k, t in enumerate(slow, start=1):
        assert k * slow_each <= t + 0.002 and t <= k * slow_each + 0.04
    # The fast destination is not held up behind the slow path.
    assert fast[-1] <= 3 * fast_each + 0.04
    assert slow[-1] - fast[-1] >= 3 * (slow_each - fast_each) - 0.04


@pytest.mark.parametrize("where", ["path", "downlink"])
def test_replace_drops_what_is_still_crossing_a_slow_path_or_queued_downstream(where):
    clock = DilatedClock(time.monotonic(), 1.0)
    # An unlimited uplink (the geo default) and 0.4 Mbit/s on the path or on the receiver's
    # downlink: ~10 kB takes ~200 ms. On the downlink the sender hands everything over at
    # once and the messages queue at the receiver, where TCP would have held them back.
    if where == "path":
        links = (_link(up_mbps=float("inf"), paths={1: 0.4}), _link())
    else:
        links = (_link(up_mbps=float("inf")), _link(down_mbps=0.4))
    pair = Pair(clock, links[0], {1: links[1]})
    payload = np.zeros(2_500, dtype=np.float32)
    old = [Message("fragment", 0, 1, 0, i, (payload,)) for i in range(3)]
    new = [Message("fragment", 0, 1, 1, i, (payload,)) for i in range(2)]
    size = wire_size(old[0])
    each = size * 8 / 0.4e6
    try:
        pair.sender.send(old)
        time.sleep(0.05)  # the first old message is a quarter of the way across
        replaced_at = clock.now()
        pair.sender.send(new, replace=True)
        got = pair.collect(1, 2, since=replaced_at)
        time.sleep(0.1)
        late = pair.receivers[1].receive()
    finally:
        pair.close()
    tx, rx = pair.sender.stats, pair.receivers[1].stats
    assert [r for r, _ in got] == [1, 1] and late is None
    if where == "path":
        assert tx.dropped_messages == 3 and tx.dropped_bytes == {1: 3 * size}
        assert tx.sent_messages == 2 and rx.delivered_messages == 2
    else:  # the sender had sent all three (counted sent); the receiver cut them all
        assert tx.sent_messages == 5 and tx.dropped_messages == 0
        assert rx.flushed_messages == 3 and rx.flushed_bytes == {0: 3 * size}
        assert rx.delivered_messages == 2
    # The link was freed at the cut: the new ones take two transfers, not five.
    assert 2 * each - 0.002 <= got[-1][1] <= 2 * each + 0.15


def test_close_stops_both_threads_and_terminates_the_context():
    clock = DilatedClock(time.monotonic(), 1.0)
    pair = Pair(clock, _link(), {1: _link()})
    pair.close()
    for transport in (pair.sender, pair.receivers[1]):
        assert not transport.sender.is_alive() and not transport.receiver.is_alive()
        assert transport.ctx.closed


def test_with_more_peers_than_open_connections_every_message_still_arrives():
    """transport.max_connections=1 and three peers: every send to another peer closes the
    last connection (after it delivered) and opens one to the new peer."""
    clock = DilatedClock(time.monotonic(), 1.0)
    pair = Pair(clock, _link(), {node: _link() for node in (1, 2, 3)}, max_connections=1)
    payload = np.arange(100, dtype=np.float32)
    try:
        for round_ in range(2):
            for node in (1, 2, 3):
                pair.sender.send([Message("model", 0, node, round_, 0, (payload,))])
        got = {node: pair.collect(node, 2) for node in (1, 2, 3)}
        eager, stats = pair.sender.sender.connections.eager, pair.sender.stats
    finally:
        pair.close()
    assert {node: [r for r, _ in g] for node, g in got.items()} == {n: [0, 1] for n in (1, 2, 3)}
    assert not eager and (stats.connections_opened, stats.connections_closed) == (6, 5)


def test_unix_sockets_carry_messages_as_tcp_does(tmp_path):
    """transport.bind=ipc://: a socket file per node in the run's folder."""
    clock = DilatedClock(time.monotonic(), 1.0)
    stops = [threading.Event(), threading.Event()]
    rx = ZmqTransport(1, _link(), KINDS, stops[0], bind_address=f"ipc://{tmp_path}/1-0")
    tx = ZmqTransport(0, _link(), KINDS, stops[1], bind_address=f"ipc://{tmp_path}/0-0")
    try:
        endpoint = rx.bind()
        tx.bind()
        tx.connect({1: endpoint})
        rx.connect({0: f"ipc://{tmp_path}/0-0"})
        for transport in (tx, rx):
            transport.start(clock)
        payload = np.arange(100, dtype=np.float32)
        tx.send([Message("model", 0, 1, i, 0, (payload,)) for i in range(3)])
        got, deadline = [], time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            if (msg := rx.receive(until=clock.now() + 0.1)) is not None:
                got.append(msg)
    finally:
        tx.close()
        rx.close()
    assert endpoint == f"ipc://{tmp_path}/1-0" and (tmp_path / "1-0").exists()
    assert [m.round for m in got] == [0, 1, 2]
    assert np.array_equal(got[0].buffers[0], payload)


def test_a_peer_dead_without_notice_costs_a_bounded_wait_then_its_messages_are_lost_at_once(
    tmp_path,
):
    """Node 9's socket file exists nowhere (a process killed hard): the sender waits once for
    HAND_OVER_TIMEOUT, counts the message lost ("gone"), and the next one to 9 is lost at
    once; node 1 still gets everything sent to it."""
    clock = DilatedClock(time.monotonic(), 1.0)
    stops = [threading.Event(), threading.Event()]
    rx = ZmqTransport(1, _link(), KINDS, stops[0])
    tx = ZmqTransport(0, _link(), KINDS, stops[1])
    payload = np.arange(100, dtype=np.float32)
    try:
        tx.bind()
        tx.connect({1: rx.bind(), 9: f"ipc://{tmp_path}/nobody"})
        rx.connect({0: "tcp://127.0.0.1:1"})
        for transport in (tx, rx):
            transport.start(clock)
        started = time.monotonic()
        for round_ in range(2):
            tx.send([Message("model", 0, 9, round_, 0, (payload,))])
            tx.send([Message("model", 0, 1, round_, 0, (payload,))])
        got, deadline = [], time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            if (msg := rx.receive(until=clock.now() + 0.1)) is not None:
                got.append(msg.round)
        waited = time.monotonic() - started
    finally:
        tx.close()
        rx.close()
    assert got == [0, 1]
    assert tx.stats.totals()["messages_lost_gone"] == 2
    assert waited < HAND_OVER_TIMEOUT + 3.0  # one bounded wait, not one per message
