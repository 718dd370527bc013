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
    """An uplink whose links take `up_ms` (uplink) and `paths_ms[dst]` ms per message, driven
    as the sender thread drives it: a batch is booked and handed over at once."""

    def __init__(self, fake_clock, up_ms, paths_ms=None, max_unsent=10_000):
        def bucket(ms):
            return TokenBucket(SIZE * 8 / (ms * MS) if ms else float("inf"), clock=fake_clock)

        paths = {dst: bucket(ms) for dst, ms in (paths_ms or {}).items()}
        self.stats = LinkStats()
        self.uplink = Uplink(Egress(bucket(up_ms), paths), self.stats, max_unsent)
        self.stamps: dict[int, list] = {1: [], 2: []}  # (t_start, t_end) in ms, per dst
        self.flushes: list[tuple[float, list[int]]] = []

    def take(self, t, messages, replace=False):
        notify, bookings = self.uplink.take(tuple(pack(m) for m in messages), replace, t)
        if replace:
            self.flushes.append((_ms(t), notify))
        for booked in bookings:
            self.stamps[booked.packed.dst].append((_ms(booked.t_start), _ms(booked.t_end)))

    def sent_by(self, t):
        self.uplink.settle(t)
        return self.stats.sent_messages


def _ms(t):
    return round(t / MS, 6)


def test_a_batch_is_booked_back_to_back_and_counts_as_sent_once_it_has_left(fake_clock):
    s = Stepped(fake_clock, up_ms=1)
    s.take(0.0, [_msg(1, frag=0), _msg(1, frag=1)])
    assert s.stamps[1] == [(0, 1), (1, 2)]  # both handed over now, stamped with their times
    assert s.sent_by(0.5 * MS) == 0 and s.sent_by(1 * MS) == 1 and s.sent_by(2.5 * MS) == 2
    assert not s.uplink.unsent and s.stats.sent_bytes[1] == 2 * SIZE
    s.take(3 * MS, [_msg(1, round_=1)])  # the uplink was idle: it starts at once
    assert s.stamps[1][-1] == (3, 4)


def test_replace_drops_the_message_still_on_the_uplink_and_flushes_its_peers(fake_clock):
    s = Stepped(fake_clock, up_ms=1)
    s.take(0.0, [_msg(1, frag=0), _msg(1, frag=1)])
    s.take(1.5 * MS, [_msg(1, round_=1)], replace=True)
    # The first had left at 1 ms; the second (1-2 ms) is cut; the new one starts at the cut.
    assert s.stamps[1] == [(0, 1), (1, 2), (1.5, 2.5)]
    assert s.stats.sent_messages == 1
    assert s.stats.dropped_messages == 1 and s.stats.dropped_bytes[1] == SIZE
    assert s.flushes == [(1.5, [1])]  # it had handed node 1 messages: told of the flush
    assert s.sent_by(2.5 * MS) == 2


def test_a_slow_path_holds_its_messages_but_not_the_uplink_nor_other_destinations(fake_clock):
    s = Stepped(fake_clock, up_ms=1, paths_ms={1: 4, 2: 0.5})
    # To 1: uplink 0-1, path 0-4; to 1: uplink 1-2, path 4-8; to 2: uplink 2-3, path 2-2.5.
    s.take(0.0, [_msg(1, frag=0), _msg(1, frag=1), _msg(2, frag=2)])
    assert s.stamps == {1: [(0, 4), (4, 8)], 2: [(2, 3)]}
    assert s.sent_by(3 * MS) == 1 and s.sent_by(4 * MS) == 2 and s.sent_by(8 * MS) == 3


def test_replace_drops_what_is_still_crossing_a_path_and_frees_it(fake_clock):
    # An unlimited uplink, as in the geo profile: only the paths take time.
    s = Stepped(fake_clock, up_ms=0, paths_ms={1: 4, 2: 1})
    s.take(0.0, [_msg(1, frag=0), _msg(1, frag=1), _msg(2, frag=2)])
    assert s.stamps == {1: [(0, 4), (4, 8)], 2: [(0, 1)]}
    # A replacing batch at 6 ms: the first message to 1 had arrived at 4 ms; the second
    # (path 4-8 ms) is dropped and the path freed; the new one crosses it 6-10 ms.
    s.take(6 * MS, [_msg(1, round_=1)], replace=True)
    assert s.stats.dropped_messages == 1 and s.stats.dropped_bytes == {1: SIZE}
    assert s.stamps[1][-1] == (6, 10)
    assert s.sent_by(10 * MS) == 3 and s.stats.sent_bytes == {1: 2 * SIZE, 2: SIZE}
    assert s.flushes == [(6, [1, 2])]  # both peers had been handed messages


def test_a_full_uplink_refuses_what_does_not_fit_and_counts_it(fake_clock):
    s = Stepped(fake_clock, up_ms=1, max_unsent=2)
    s.take(0.0, [_msg(1, frag=f) for f in range(3)])
    assert len(s.stamps[1]) == 2 and len(s.uplink.unsent) == 2
    assert s.stats.dropped_messages == 1 and s.stats.dropped_bytes == {1: SIZE}


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


def test_the_downlink_books_in_order_of_arrival_whatever_the_order_handed_over(fake_clock):
    queue, _ = _queue(fake_clock)  # 1 byte per ms
    queue.admit(_arrived(2, 0.05, 0.05, frag=1), 100)  # handed over first, arrives second
    queue.admit(_arrived(1, 0.0, 0.0, frag=0), 100)
    assert queue.next_due() == 0.0  # an arrival to book
    released = queue.release(0.25)
    assert [(m.frag, size) for m, size in released] == [(0, 100), (1, 100)]
    queue.admit(_arrived(3, 0.2, 0.2), 10)  # the downlink is busy until 0.2: starts at once
    assert queue.release(0.21) == [] and len(queue.release(0.22)) == 1


def test_the_downlink_releases_in_delivery_order_and_counts_late_ones(fake_clock):
    queue, stats = _queue(fake_clock, latency=0.01)  # 1 byte per ms, 10 ms latency
    assert queue.admit(_arrived(1, 0.0, 0.0, frag=0), 100) == pytest.approx(0.01)
    assert queue.admit(_arrived(2, 0.0, 0.0, frag=1), 50) == pytest.approx(0.01)
    assert queue.next_due() == pytest.approx(0.01)
    assert queue.release(0.10) == []  # booked: delivered at 0.11 and 0.16
    assert queue.next_due() == pytest.approx(0.11)
    released = queue.release(0.2, late_after=0.005)
    assert [(m.src, size) for m, size in released] == [(1, 100), (2, 50)]
    assert stats.late_deliveries == 2 and stats.max_delivery_lateness == pytest.approx(0.09)
    assert queue.next_due() == float("inf")


def test_a_message_admitted_after_the_reader_drained_past_its_instant_counts_late(fake_clock):
    queue, stats = _queue(fake_clock, latency=0.01)
    # The reader took everything due by 0.5: a message that could be delivered by 0.3 (its
    # last byte left at 0.29) missed that look by 0.2 s; one due after 0.5 did not miss it.
    queue.admit(_arrived(1, 0.2, 0.29), 10, drained_until=0.5)
    queue.admit(_arrived(2, 0.5, 0.6), 10, drained_until=0.5)
    assert stats.late_deliveries == 1 and stats.max_delivery_lateness == pytest.approx(0.2)


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
    assert queue.release(0.255) == [] and len(queue.release(0.26)) == 1  # behind 2's (0.25)


def test_a_flush_drops_silently_what_had_not_left_its_sender_yet(fake_clock):
    queue, stats = _queue(fake_clock)
    queue.admit(_arrived(1, 0.1, 0.3), 100)  # still on the sender's uplink at 0.2
    queue.admit(_arrived(1, 0.0, 0.01), 10)  # left at 0.01, delivered at 0.01
    queue.flush(1, at=0.2)
    assert stats.flushed_messages == 0  # the sender counted the first one dropped
    assert [m.t_end for m, _ in queue.release(1.0)] == [0.01]


def test_a_full_downlink_refuses_and_counts(fake_clock):
    queue, stats = _queue(fake_clock, max_bytes=150)
    assert queue.admit(_arrived(1, 0.0, 0.0), 100) is not None
    assert queue.admit(_arrived(1, 0.0, 0.0), 100) is None
    assert stats.inbox_overflow_messages == 1
