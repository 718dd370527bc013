"""The uplink and downlink schedules stepped by hand on a fake clock: no thread, no sockets."""

from __future__ import annotations

import numpy as np
import pytest

from transport import Downlink, DownlinkQueue, Egress, LinkStats, Message, TokenBucket, Uplink
from transport.wire import pack, wire_size


def _msg(dst, round_=0, frag=0, src=0):
    return Message("fragment", src, dst, round_, frag, (np.zeros(250, dtype=np.float32),))


MS = 1e-3
SIZE = wire_size(_msg(1))


class Stepped:
    """An uplink whose links take `up_ms` (uplink) and `paths_ms[dst]` ms per message, woken
    at chosen instants as the sender thread would be: hand over what is due, then take the
    batch, then hand over again."""

    def __init__(self, fake_clock, up_ms, paths_ms=None):
        def bucket(ms):
            return TokenBucket(SIZE * 8 / (ms * MS) if ms else float("inf"), clock=fake_clock)

        paths = {dst: bucket(ms) for dst, ms in (paths_ms or {}).items()}
        self.stats = LinkStats()
        self.uplink = Uplink(Egress(bucket(up_ms), paths), self.stats)
        self.clock = fake_clock
        self.got: dict[int, list] = {1: [], 2: []}  # (left at, round, frag, t_start, t_end)
        self.flushes: dict[int, list] = {1: [], 2: []}  # when a flush notice left

    def step(self, t, messages=None, replace=False):
        self.clock.t = t
        self._hand_over(t)
        if messages is not None:
            for dst in self.uplink.take(tuple(pack(m) for m in messages), replace, t):
                self.flushes[dst].append(_ms(t))
            self._hand_over(t)

    def _hand_over(self, t):
        for booked in self.uplink.advance(t):
            self.uplink.handed_over(booked)
            self.got[booked.packed.dst].append((_ms(t), _ms(booked.t_start), _ms(booked.t_end)))


def _ms(t):
    return round(t / MS, 6)


def test_without_paths_a_message_leaves_at_its_uplink_finish(fake_clock):
    s = Stepped(fake_clock, up_ms=1)
    s.uplink.take((pack(_msg(1, frag=0)), pack(_msg(1, frag=1))), False, 0.0)
    assert s.uplink.next_due() == float("-inf")  # a batch waits for the idle uplink
    s.step(0.0)
    assert s.uplink.next_due() == pytest.approx(1 * MS) and not s.got[1]
    s.step(1 * MS)
    s.step(2.5 * MS)  # a late wake-up: the second one was booked from 1 ms all the same
    assert s.got[1] == [(1, 0, 1), (2.5, 1, 2)]
    assert not s.uplink.held and s.uplink.on_uplink is None
    assert s.uplink.next_due() == float("inf")
    assert s.stats.sent_messages == 2 and s.stats.sent_bytes[1] == 2 * SIZE


def test_without_paths_replace_cuts_the_message_on_the_uplink(fake_clock):
    s = Stepped(fake_clock, up_ms=1)
    s.step(0.0, [_msg(1, frag=0), _msg(1, frag=1)])
    s.step(1.5 * MS, [_msg(1, round_=1)], replace=True)
    # The first had left at 1 ms; the second is cut; the new one starts at the cut.
    assert s.got[1] == [(1.5, 0, 1)]
    assert s.stats.dropped_messages == 1 and s.stats.dropped_bytes[1] == SIZE
    assert s.uplink.next_due() == pytest.approx(2.5 * MS)
    assert s.flushes[1] == [1.5]  # it had been sent to: told of the flush at once


def test_a_slow_path_holds_its_messages_but_not_the_uplink_nor_other_destinations(fake_clock):
    s = Stepped(fake_clock, up_ms=1, paths_ms={1: 4, 2: 0.5})
    # To 1: uplink 0-1, path 0-4; to 1: uplink 1-2, path 4-8; to 2: uplink 2-3, path 2-2.5.
    s.step(0.0, [_msg(1, frag=0), _msg(1, frag=1), _msg(2, frag=2)])
    s.step(1 * MS)
    s.step(2 * MS)
    assert [entry[0] for entry in s.uplink.held] == pytest.approx([4 * MS, 8 * MS])
    assert s.uplink.next_due() == pytest.approx(3 * MS)
    s.step(3 * MS)
    assert s.got[2] == [(3, 2, 3)]
    assert not s.got[1] and s.stats.sent_messages == 1
    assert s.uplink.next_due() == pytest.approx(4 * MS)
    s.step(4 * MS)
    s.step(8 * MS)
    assert s.got[1] == [(4, 0, 4), (8, 4, 8)]
    assert s.stats.sent_messages == 3 and not s.uplink.held


def test_replace_drops_what_is_still_crossing_a_path_and_frees_it(fake_clock):
    # An unlimited uplink, as in the geo profile: only the paths take time.
    s = Stepped(fake_clock, up_ms=0, paths_ms={1: 4, 2: 1})
    s.step(0.0, [_msg(1, frag=0), _msg(1, frag=1), _msg(2, frag=2)])
    assert s.uplink.on_uplink is None and len(s.uplink.held) == 3
    s.step(1 * MS)
    # The sender wakes late, at 6 ms, with a replacing batch: the first message to 1 had
    # arrived at 4 ms and still goes; the second (path 4-8 ms) is dropped and the path freed.
    s.step(6 * MS, [_msg(1, round_=1)], replace=True)
    assert s.stats.dropped_messages == 1 and s.stats.dropped_bytes == {1: SIZE}
    assert s.stats.total_dropped == SIZE
    s.step(10 * MS)
    assert s.got[1] == [(6, 0, 4), (10, 6, 10)]
    assert s.got[2] == [(1, 0, 1)]
    assert s.stats.sent_messages == 3 and s.stats.sent_bytes == {1: 2 * SIZE, 2: SIZE}
    # Both peers had been sent to before the flush: each got one notice, at once, unshaped.
    assert s.flushes == {1: [6], 2: [6]}


def test_a_full_backlog_drops_its_oldest_message(fake_clock):
    stats = LinkStats()
    uplink = Uplink(Egress(TokenBucket(1e3, clock=fake_clock)), stats, max_backlog=2)
    uplink.take(tuple(pack(_msg(1, frag=f)) for f in range(3)), False, 0.0)
    assert [p.size for p, _ in uplink.backlog] == [SIZE, SIZE]
    assert stats.dropped_messages == 1 and stats.dropped_bytes == {1: SIZE}


# ---- the downlink --------------------------------------------------------------------------
def _queue(fake_clock, rate_bps=8_000.0, latency=0.0, max_bytes=1 << 20):
    stats = LinkStats()
    down = Downlink(rate_bps, latency, clock=fake_clock)
    return DownlinkQueue(down, stats, max_bytes), stats


def _arrived(src, t_start, t_end, frag=0):
    return Message("fragment", src, 9, 0, frag, (), {}, t_start, t_end)


def test_downlink_rebook_moves_queued_messages_up_into_the_freed_share(fake_clock):
    down = Downlink(8_000.0, 0.0, clock=fake_clock)  # 1 byte per ms
    assert down.book(100, 0.0, 0.0) == (0.0, 0.1, 0.1)
    assert down.book(100, 0.0, 0.0) == (0.1, 0.2, 0.2)
    # The first was cut at 0.05 s: the second now runs 0.05-0.15; a later arrival waits for it.
    assert down.rebook([(100, 0.0, 0.0), (50, 0.3, 0.32)], free_from=0.05) == [
        pytest.approx((0.05, 0.15, 0.15)),
        pytest.approx((0.3, 0.35, 0.35)),
    ]


def test_the_downlink_releases_in_delivery_order_and_counts_late_ones(fake_clock):
    queue, stats = _queue(fake_clock, latency=0.01)  # 1 byte per ms, 10 ms latency
    assert queue.admit(_arrived(1, 0.0, 0.0, frag=0), 100)  # delivered at 0.11
    assert queue.admit(_arrived(2, 0.0, 0.0, frag=1), 50)  # queues behind it: 0.16
    assert queue.next_due() == pytest.approx(0.11)
    assert queue.release(0.10, late_after=0.005) == []
    released = queue.release(0.2, late_after=0.005)
    assert [(m.src, size) for m, size in released] == [(1, 100), (2, 50)]
    assert stats.late_deliveries == 2 and stats.max_delivery_lateness == pytest.approx(0.09)
    assert queue.next_due() == float("inf")


def test_a_flush_cuts_only_what_of_its_sender_was_not_delivered_by_then(fake_clock):
    queue, stats = _queue(fake_clock)
    queue.admit(_arrived(1, 0.0, 0.0, frag=0), 100)  # 0.0-0.1
    queue.admit(_arrived(1, 0.0, 0.0, frag=1), 100)  # 0.1-0.2
    queue.admit(_arrived(2, 0.0, 0.0, frag=2), 100)  # 0.2-0.3
    queue.flush(1, at=0.15)  # the first was delivered by then; the second is cut midway
    assert stats.flushed_messages == 1 and stats.flushed_bytes == {1: 100}
    # The downlink stays busy with the cut one until the flush; node 2's moves up to 0.15.
    assert queue.next_due() == pytest.approx(0.1)
    released = queue.release(1.0, late_after=1.0)
    assert [m.frag for m, _ in released] == [0, 2]
    queue.admit(_arrived(3, 0.0, 0.0), 10)
    assert queue.next_due() == pytest.approx(0.26)  # behind 2's, which now ends at 0.25


def test_a_full_downlink_refuses_and_counts(fake_clock):
    queue, stats = _queue(fake_clock, max_bytes=150)
    assert queue.admit(_arrived(1, 0.0, 0.0), 100)
    assert not queue.admit(_arrived(1, 0.0, 0.0), 100)
    assert stats.inbox_overflow_messages == 1
