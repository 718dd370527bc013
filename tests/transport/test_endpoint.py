"""Sender and receiver over real ZeroMQ sockets: shaped rate, drop policy, bad input; and the
sender's schedule stepped by hand on a fake clock."""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time

import numpy as np
import pytest
import zmq

from transport import (
    FLUSH,
    Downlink,
    EmulatedClock,
    LinkStats,
    Message,
    Receiver,
    SendBatch,
    Sender,
    TokenBucket,
    decode,
    wire_size,
)

pytestmark = pytest.mark.process


def _receiver(ctx, node_id, clock, rate_bps, latency_s=0.001, sources=frozenset({0})):
    stop, inbox, stats = threading.Event(), queue.Queue(maxsize=100_000), LinkStats()
    down = Downlink(rate_bps, latency_s, clock=lambda: clock.now())
    rx = Receiver(ctx, node_id, "tcp://127.0.0.1:0", down, None, inbox, stop, stats, 1 << 24)
    rx.start()
    assert rx.bound.wait(5)
    rx.start_clock(clock, sources)
    return rx, stop, inbox, stats


def _send_process(endpoint, t0, tdf, rate_bps, count, size, done):
    """A separate OS process: one sender thread pushing `count` messages through its uplink."""
    ctx = zmq.Context()
    clock = EmulatedClock(t0, tdf)
    stop, outbox, stats = threading.Event(), queue.Queue(), LinkStats()
    tx = Sender(
        ctx, 0, {1: endpoint}, TokenBucket(rate_bps, clock=clock.now), clock, outbox, stop, stats
    )
    tx.start()
    tx.start_clock(clock)
    payload = np.ones(size // 4, dtype=np.float32)
    outbox.put(SendBatch(tuple(Message("model", 0, 1, i, 0, (payload,)) for i in range(count))))
    deadline = time.monotonic() + 60
    while stats.sent_messages < count and time.monotonic() < deadline and tx.is_alive():
        time.sleep(0.01)
    done.value = stats.sent_messages
    stop.set()
    tx.join(5)
    ctx.destroy(linger=0)


@pytest.mark.parametrize("rate_mbps", [2.0, 20.0])
def test_two_processes_deliver_within_two_percent_of_the_configured_rate(zmq_context, rate_mbps):
    tdf, rate, count, size = 1.0, rate_mbps * 1e6, 120, 20_000
    clock = EmulatedClock(time.monotonic() + 0.5, tdf)
    # The downlink is 10x faster, so the uplink alone sets the pace.
    rx, stop, inbox, stats = _receiver(zmq_context, 1, clock, rate * 10)
    done = mp.get_context("spawn").Value("i", 0)
    proc = mp.get_context("spawn").Process(
        target=_send_process, args=(rx.endpoint, clock.t0, tdf, rate, count, size, done)
    )
    proc.start()
    try:
        times, deadline = [], time.monotonic() + 60
        while len(times) < count and time.monotonic() < deadline:
            try:
                inbox.get(timeout=1.0)
                times.append(clock.now())
            except queue.Empty:
                continue
        proc.join(30)
    finally:
        stop.set()
        rx.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    assert len(times) == count and done.value == count and stats.malformed_messages == 0
    msg_bytes = stats.total_delivered / count
    measured = (count - 1) * msg_bytes * 8 / (times[-1] - times[0])
    assert measured == pytest.approx(rate, rel=0.02)


def test_replace_drops_everything_unsent_and_counts_it(zmq_context):
    clock = EmulatedClock(time.monotonic(), 1.0)
    rx, rx_stop, inbox, rx_stats = _receiver(zmq_context, 1, clock, 1e9)
    stop, outbox, stats = threading.Event(), queue.Queue(), LinkStats()
    rate = 8e6  # 1 MB/s: each 50 kB message holds the wire for 50 ms
    tx = Sender(
        zmq_context,
        0,
        {1: rx.endpoint},
        TokenBucket(rate, clock=clock.now),
        clock,
        outbox,
        stop,
        stats,
    )
    tx.start()
    tx.start_clock(clock)
    payload = np.zeros(12_500, dtype=np.float32)
    old = tuple(Message("fragment", 0, 1, 0, i, (payload,)) for i in range(10))
    try:
        outbox.put(SendBatch(old))
        time.sleep(0.12)  # about two sent, the third on the wire
        new = tuple(Message("fragment", 0, 1, 1, i, (payload,)) for i in range(2))
        outbox.put(SendBatch(new, replace=True))
        deadline = time.monotonic() + 10
        while stats.sent_messages + stats.dropped_messages < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
    finally:
        stop.set()
        rx_stop.set()
        tx.join(5)
        rx.join(5)
    size = wire_size(old[0])
    assert stats.sent_messages + stats.dropped_messages == 12
    assert 1 <= stats.sent_messages - 2 <= 3  # the two new ones, after one to three old ones
    assert stats.dropped_messages >= 7
    assert stats.total_dropped == stats.dropped_messages * size
    rounds = []
    while not inbox.empty():
        rounds.append(inbox.get_nowait().round)
    assert rounds[-2:] == [1, 1] and set(rounds[:-2]) == {0}


def test_malformed_and_misaddressed_messages_are_dropped_and_counted(zmq_context):
    clock = EmulatedClock(time.monotonic(), 1.0)
    rx, stop, inbox, stats = _receiver(zmq_context, 1, clock, 1e9)
    push = zmq_context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(rx.endpoint)
    try:
        import pickle

        from transport.wire import encode

        push.send(pickle.dumps({"CHANNEL": "model"}))
        push.send_multipart([b"\x81\xa1v\x01", b"garbage"])
        push.send_multipart(encode(Message("model", 0, 2, 0, 0, ())))  # not for node 1
        push.send_multipart(encode(Message("model", 5, 1, 0, 0, ())))  # unknown sender
        push.send_multipart(encode(Message("model", 0, 1, 0, 0, (np.ones(3, np.float32),))))
        got = inbox.get(timeout=5)
    finally:
        stop.set()
        rx.join(5)
        push.close(linger=0)
    assert got.src == 0 and got.buffers[0].tolist() == [1.0, 1.0, 1.0]
    assert stats.malformed_messages == 4 and stats.delivered_messages == 1


def test_messages_to_a_slow_path_arrive_later_than_to_a_fast_one(zmq_context):
    clock = EmulatedClock(time.monotonic(), 1.0)
    rx_slow, slow_stop, slow_inbox, _ = _receiver(zmq_context, 1, clock, 1e9)
    rx_fast, fast_stop, fast_inbox, _ = _receiver(zmq_context, 2, clock, 1e9)
    stop, outbox, stats = threading.Event(), queue.Queue(), LinkStats()
    # A fast uplink (80 Mbit/s, ~1 ms per message) and paths of 0.8 and 8 Mbit/s:
    # ~10 kB takes ~100 ms on the slow path and ~10 ms on the fast one.
    paths = {1: TokenBucket(0.8e6, clock=clock.now), 2: TokenBucket(8e6, clock=clock.now)}
    tx = Sender(
        zmq_context,
        0,
        {1: rx_slow.endpoint, 2: rx_fast.endpoint},
        TokenBucket(80e6, clock=clock.now),
        clock,
        outbox,
        stop,
        stats,
        paths=paths,
    )
    tx.start()
    assert tx.connected.wait(5)
    tx.start_clock(clock)
    payload = np.zeros(2_500, dtype=np.float32)
    batch = tuple(Message("fragment", 0, 1 + i % 2, 0, i, (payload,)) for i in range(6))
    size = wire_size(batch[0])
    arrivals: dict[int, list[float]] = {1: [], 2: []}
    try:
        queued = clock.now()
        outbox.put(SendBatch(batch))
        deadline = time.monotonic() + 10
        while len(arrivals[1]) + len(arrivals[2]) < 6 and time.monotonic() < deadline:
            for dst, inbox in ((1, slow_inbox), (2, fast_inbox)):
                try:
                    inbox.get_nowait()
                    arrivals[dst].append(clock.now() - queued)
                except queue.Empty:
                    pass
            time.sleep(0.001)
    finally:
        stop.set()
        slow_stop.set()
        fast_stop.set()
        tx.join(5)
        rx_slow.join(5)
        rx_fast.join(5)
    assert len(arrivals[1]) == 3 and len(arrivals[2]) == 3
    slow_each, fast_each = size * 8 / 0.8e6, size * 8 / 8e6
    # FIFO on the slow path: the k-th message lands after k slow transfers (+ 1 ms latency).
    for k, t in enumerate(arrivals[1], start=1):
        assert k * slow_each <= t + 0.002 and t <= k * slow_each + 0.04
    # The fast destination is not held up behind the slow path.
    assert arrivals[2][-1] <= 3 * fast_each + 0.04
    assert arrivals[1][-1] - arrivals[2][-1] >= 3 * (slow_each - fast_each) - 0.04


# The sender's schedule stepped by hand on a fake clock: no thread, no sockets, no sleeps.
class _Wire:
    """Stands in for a PUSH socket: records each handed-over message with the time it left."""

    def __init__(self, clock):
        self.clock, self.got = clock, []

    def send_multipart(self, frames, flags=0, copy=True):
        self.got.append((self.clock(), decode(frames)))


def _msg(dst, round_=0, frag=0):
    return Message("fragment", 0, dst, round_, frag, (np.zeros(250, dtype=np.float32),))


MS = 1e-3
SIZE = wire_size(_msg(1))


def _stepped_sender(fake_clock, up_ms, paths_ms=None):
    """A sender whose links take `up_ms` (uplink) and `paths_ms[dst]` ms per message."""
    clock = EmulatedClock(0.0, 1.0, monotonic=fake_clock)

    def bucket(ms):
        return TokenBucket(SIZE * 8 / (ms * MS) if ms else float("inf"), clock=clock.now)

    paths = {dst: bucket(ms) for dst, ms in (paths_ms or {}).items()}
    stop, outbox, stats = threading.Event(), queue.Queue(), LinkStats()
    tx = Sender(None, 0, {}, bucket(up_ms), clock, outbox, stop, stats, paths=paths)
    wires = {1: _Wire(fake_clock), 2: _Wire(fake_clock)}

    def step(t, batch=None):
        """One wake-up of the sender's loop at `t`, then the next one at once (as `_loop`)."""
        fake_clock.t = t
        tx._advance(wires, t)
        if batch is not None:
            tx._take(batch, t, wires)
            tx._advance(wires, t)

    return tx, wires, step


def _stamps(wire):
    """(left at, round, frag, t_start, t_end) of each handed-over message, times in ms."""
    return [
        (_ms(left), m.round, m.frag, _ms(m.t_start), _ms(m.t_end))
        for left, m in wire.got
        if m.kind != FLUSH
    ]


def _flushes(wire):
    """When each flush notice left, and the flush instant it carries, in ms."""
    return [(_ms(left), _ms(m.t_start)) for left, m in wire.got if m.kind == FLUSH]


def _ms(t):
    return round(t / MS, 6)


def test_without_paths_a_message_leaves_at_its_uplink_finish(fake_clock):
    tx, wires, step = _stepped_sender(fake_clock, up_ms=1)
    tx._take(SendBatch((_msg(1, frag=0), _msg(1, frag=1))), 0.0, wires)
    assert tx._next_due() == float("-inf")  # a batch waits for the idle uplink
    step(0.0)
    assert tx._next_due() == pytest.approx(1 * MS) and not wires[1].got
    step(1 * MS)
    step(2.5 * MS)  # a late wake-up: the second one was booked from 1 ms all the same
    assert _stamps(wires[1]) == [(1, 0, 0, 0, 1), (2.5, 0, 1, 1, 2)]
    assert not tx.held and tx.on_uplink is None and tx._next_due() == float("inf")
    assert tx.stats.sent_messages == 2 and tx.stats.sent_bytes[1] == 2 * SIZE


def test_without_paths_replace_cuts_the_message_on_the_uplink(fake_clock):
    tx, wires, step = _stepped_sender(fake_clock, up_ms=1)
    step(0.0, SendBatch((_msg(1, frag=0), _msg(1, frag=1))))
    step(1.5 * MS, SendBatch((_msg(1, round_=1),), replace=True))
    # The first had left at 1 ms; the second is cut; the new one starts at the cut.
    assert _stamps(wires[1]) == [(1.5, 0, 0, 0, 1)]
    assert tx.stats.dropped_messages == 1 and tx.stats.dropped_bytes[1] == SIZE
    assert tx._next_due() == pytest.approx(2.5 * MS)


def test_a_slow_path_holds_its_messages_but_not_the_uplink_nor_other_destinations(fake_clock):
    tx, wires, step = _stepped_sender(fake_clock, up_ms=1, paths_ms={1: 4, 2: 0.5})
    # To 1: uplink 0-1, path 0-4; to 1: uplink 1-2, path 4-8; to 2: uplink 2-3, path 2-2.5.
    step(0.0, SendBatch((_msg(1, frag=0), _msg(1, frag=1), _msg(2, frag=2))))
    step(1 * MS)
    step(2 * MS)
    assert [entry[0] for entry in tx.held] == pytest.approx([4 * MS, 8 * MS])
    assert tx._next_due() == pytest.approx(3 * MS)
    step(3 * MS)
    assert _stamps(wires[2]) == [(3, 0, 2, 2, 3)]
    assert not wires[1].got and tx.stats.sent_messages == 1
    assert tx._next_due() == pytest.approx(4 * MS)
    step(4 * MS)
    step(8 * MS)
    assert _stamps(wires[1]) == [(4, 0, 0, 0, 4), (8, 0, 1, 4, 8)]
    assert tx.stats.sent_messages == 3 and not tx.held


def test_replace_drops_what_is_still_crossing_a_path_and_frees_it(fake_clock):
    # An unlimited uplink, as in the geo profile: only the paths take time.
    tx, wires, step = _stepped_sender(fake_clock, up_ms=0, paths_ms={1: 4, 2: 1})
    step(0.0, SendBatch((_msg(1, frag=0), _msg(1, frag=1), _msg(2, frag=2))))
    assert tx.on_uplink is None and len(tx.held) == 3
    step(1 * MS)
    # The sender wakes late, at 6 ms, with a replacing batch: the first message to 1 had
    # arrived at 4 ms and still goes; the second (path 4-8 ms) is dropped and the path freed.
    step(6 * MS, SendBatch((_msg(1, round_=1),), replace=True))
    assert tx.stats.dropped_messages == 1 and tx.stats.dropped_bytes == {1: SIZE}
    assert tx.stats.total_dropped == SIZE
    step(10 * MS)
    assert _stamps(wires[1]) == [(6, 0, 0, 0, 4), (10, 1, 0, 6, 10)]
    assert _stamps(wires[2]) == [(1, 0, 2, 0, 1)]
    assert tx.stats.sent_messages == 3 and tx.stats.sent_bytes == {1: 2 * SIZE, 2: SIZE}
    # Both peers had been sent to before the flush: each got one notice, at once, unshaped.
    assert _flushes(wires[1]) == [(6, 6)] and _flushes(wires[2]) == [(6, 6)]


def test_replace_drops_a_message_still_crossing_a_slow_path(zmq_context):
    clock = EmulatedClock(time.monotonic(), 1.0)
    rx, rx_stop, inbox, rx_stats = _receiver(zmq_context, 1, clock, 1e9)
    stop, outbox, stats = threading.Event(), queue.Queue(), LinkStats()
    # An unlimited uplink (the geo default) and a 0.4 Mbit/s path: ~10 kB takes ~200 ms on it.
    tx = Sender(
        zmq_context,
        0,
        {1: rx.endpoint},
        TokenBucket(float("inf"), clock=clock.now),
        clock,
        outbox,
        stop,
        stats,
        paths={1: TokenBucket(0.4e6, clock=clock.now)},
    )
    tx.start()
    assert tx.connected.wait(5)
    tx.start_clock(clock)
    payload = np.zeros(2_500, dtype=np.float32)
    old = tuple(Message("fragment", 0, 1, 0, i, (payload,)) for i in range(3))
    new = tuple(Message("fragment", 0, 1, 1, i, (payload,)) for i in range(2))
    size = wire_size(old[0])
    each = size * 8 / 0.4e6
    got: list[tuple[int, float]] = []
    try:
        outbox.put(SendBatch(old))
        time.sleep(0.05)  # the first old message is a quarter of the way across the path
        replaced_at = clock.now()
        outbox.put(SendBatch(new, replace=True))
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            try:
                got.append((inbox.get(timeout=0.1).round, clock.now() - replaced_at))
            except queue.Empty:
                continue
    finally:
        stop.set()
        rx_stop.set()
        tx.join(5)
        rx.join(5)
    assert [r for r, _ in got] == [1, 1] and inbox.empty()
    assert stats.dropped_messages == 3 and stats.dropped_bytes == {1: 3 * size}
    assert stats.sent_messages == 2 and rx_stats.delivered_messages == 2
    # The path was freed at the cut: the new ones take two transfers, not five.
    assert 2 * each - 0.002 <= got[-1][1] <= 2 * each + 0.15


def test_a_flush_also_cuts_what_waits_in_the_receivers_downlink(zmq_context):
    clock = EmulatedClock(time.monotonic(), 1.0)
    # A 0.4 Mbit/s downlink behind an unlimited uplink: the sender hands everything over at
    # once and the messages queue at the receiver, where TCP would have held them back.
    rx, rx_stop, inbox, rx_stats = _receiver(zmq_context, 1, clock, 0.4e6)
    stop, outbox, stats = threading.Event(), queue.Queue(), LinkStats()
    tx = Sender(
        zmq_context,
        0,
        {1: rx.endpoint},
        TokenBucket(float("inf"), clock=clock.now),
        clock,
        outbox,
        stop,
        stats,
    )
    tx.start()
    assert tx.connected.wait(5)
    tx.start_clock(clock)
    payload = np.zeros(2_500, dtype=np.float32)
    old = tuple(Message("fragment", 0, 1, 0, i, (payload,)) for i in range(3))
    new = tuple(Message("fragment", 0, 1, 1, i, (payload,)) for i in range(2))
    size = wire_size(old[0])
    each = size * 8 / 0.4e6  # ~0.2 s per message on the downlink
    got: list[tuple[int, float]] = []
    try:
        outbox.put(SendBatch(old))
        time.sleep(0.05)  # the first old message is a quarter of the way through the downlink
        replaced_at = clock.now()
        outbox.put(SendBatch(new, replace=True))
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            try:
                got.append((inbox.get(timeout=0.1).round, clock.now() - replaced_at))
            except queue.Empty:
                continue
        time.sleep(0.1)
    finally:
        stop.set()
        rx_stop.set()
        tx.join(5)
        rx.join(5)
    # The sender had sent all three (counted sent, not dropped); the receiver cut them all.
    assert stats.sent_messages == 5 and stats.dropped_messages == 0
    assert rx_stats.flushed_messages == 3 and rx_stats.flushed_bytes == {0: 3 * size}
    assert [r for r, _ in got] == [1, 1] and inbox.empty()
    assert rx_stats.delivered_messages == 2
    # The downlink was free from the flush on: two transfers, not five (or 4.75).
    assert 2 * each - 0.002 <= got[-1][1] <= 2 * each + 0.15


def test_downlink_rebook_moves_queued_messages_up_into_the_freed_share(fake_clock):
    down = Downlink(8_000.0, 0.0, clock=lambda: fake_clock.t)  # 1 byte per ms
    assert down.book(100, 0.0, 0.0) == (0.0, 0.1, 0.1)
    assert down.book(100, 0.0, 0.0) == (0.1, 0.2, 0.2)
    # The first was cut at 0.05 s: the second now runs 0.05-0.15; a later arrival waits for it.
    assert down.rebook([(100, 0.0, 0.0), (50, 0.3, 0.32)], free_from=0.05) == [
        pytest.approx((0.05, 0.15, 0.15)),
        pytest.approx((0.3, 0.35, 0.35)),
    ]
