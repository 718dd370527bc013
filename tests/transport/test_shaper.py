"""The token bucket and downlink against a fake clock: exact arithmetic, no sleeps."""

import pytest

from transport.shaper import Downlink, Egress, TokenBucket


def test_back_to_back_messages_are_serialised_at_the_rate(fake_clock):
    link = TokenBucket(8e6, clock=fake_clock)  # 1 MB/s
    assert link.reserve(1000) == pytest.approx((0.0, 0.001))
    assert link.reserve(1000) == pytest.approx((0.001, 0.002))
    assert link.reserve(500) == pytest.approx((0.002, 0.0025))


def test_idle_link_starts_now_and_late_wakeups_lose_no_capacity(fake_clock):
    link = TokenBucket(8e6, clock=fake_clock)
    link.reserve(1000)
    fake_clock.advance(0.5)  # idle: the next message starts at the current time
    assert link.reserve(1000) == pytest.approx((0.5, 0.501))
    # The sender woke 3 ms late after the first of these: the second still starts at 0.502.
    fake_clock.advance(0.004)
    start, finish = link.reserve(1000)
    assert (start, finish) == pytest.approx((0.504, 0.505))
    start, finish = link.reserve(1000)
    assert (start, finish) == pytest.approx((0.505, 0.506))


def test_long_run_delivers_exactly_the_configured_rate(fake_clock):
    link = TokenBucket(10e6, clock=fake_clock)
    finish = 0.0
    for _ in range(10_000):
        _, finish = link.reserve(1250)
        fake_clock.t = finish + 1e-7 * (_ % 3)  # a jittery sender that wakes a bit late
    # 10,000 * 1250 B * 8 = 100 Mbit at 10 Mbit/s = 10 s, plus at most the accumulated jitter.
    assert finish == pytest.approx(10.0, rel=1e-3)


def test_burst_allows_a_backlog_after_idle_then_the_rate(fake_clock):
    link = TokenBucket(8e6, burst_bytes=2000, clock=fake_clock)
    fake_clock.advance(10.0)
    _, f1 = link.reserve(1000)
    _, f2 = link.reserve(1000)
    _, f3 = link.reserve(1000)
    assert (f1, f2) == pytest.approx((10.0, 10.0))
    assert f3 == pytest.approx(10.001)


def test_abort_frees_the_link_at_the_cut(fake_clock):
    link = TokenBucket(8e6, clock=fake_clock)
    link.reserve(100_000)  # would occupy the link for 0.1 s
    fake_clock.advance(0.02)
    link.abort()
    assert link.reserve(1000) == pytest.approx((0.02, 0.021))


def test_invalid_parameters_are_refused(fake_clock):
    with pytest.raises(ValueError):
        TokenBucket(0, clock=fake_clock)
    with pytest.raises(ValueError):
        TokenBucket(1e6, burst_bytes=-1, clock=fake_clock)
    with pytest.raises(ValueError):
        TokenBucket(1e6)
    with pytest.raises(ValueError):
        TokenBucket(float("nan"), clock=fake_clock)


def test_downlink_is_cut_through_when_the_uplink_is_the_bottleneck(fake_clock):
    down = Downlink(80e6, latency_s=0.001, clock=fake_clock)  # 10x the uplink below
    # 10 kB sent over a 8 Mbit/s uplink: on the wire from 0.0 to 0.01.
    assert down.deliver_at(10_000, t_start=0.0, t_end=0.01) == pytest.approx(0.011)


def test_downlink_queues_concurrent_senders(fake_clock):
    down = Downlink(8e6, latency_s=0.0, clock=fake_clock)  # 1 MB/s in
    # Two senders each push 1000 B over their own 1 MB/s uplinks at the same time.
    assert down.deliver_at(1000, 0.0, 0.001) == pytest.approx(0.001)
    assert down.deliver_at(1000, 0.0, 0.001) == pytest.approx(0.002)


def test_an_unlimited_link_takes_no_time(fake_clock):
    link = TokenBucket(float("inf"), burst_bytes=10_000, clock=fake_clock)
    fake_clock.advance(2.0)
    assert link.reserve(10**9) == (2.0, 2.0)
    assert link.reserve(1000, at=1.5) == (2.0, 2.0)  # booked after the link's last finish
    down = Downlink(float("inf"), latency_s=0.001, clock=fake_clock)
    assert down.deliver_at(10**6, t_start=2.0, t_end=2.5) == pytest.approx(2.501)


# Egress: uplink 1 MB/s (1 ms per 1000 B) and paths to destinations 1 and 2.
def _egress(fake_clock, up=8e6, paths=None):
    buckets = {dst: TokenBucket(rate, clock=fake_clock) for dst, rate in (paths or {}).items()}
    return Egress(TokenBucket(up, clock=fake_clock), buckets)


def test_egress_without_paths_is_the_uplink_alone(fake_clock):
    egress, alone = _egress(fake_clock), TokenBucket(8e6, clock=fake_clock)
    for dst, size, at in ((1, 1000, 0.0), (2, 500, 0.0), (1, 2000, 0.5)):
        start, finish = alone.reserve(size, at=at)
        assert egress.reserve(dst, size, at=at) == (finish, start, finish)


def test_two_destinations_get_their_own_path_rates(fake_clock):
    egress = _egress(fake_clock, paths={1: 4e6, 2: 16e6})  # 2 ms and 0.5 ms per 1000 B
    # To 1: uplink 0-1 ms, path 0-2 ms: the sender is free at 1 ms, the receiver gets it at 2.
    assert egress.reserve(1, 1000, at=0.0) == pytest.approx((0.001, 0.0, 0.002))
    # To 2: uplink 1-2 ms, path 1-1.5 ms: the uplink is the bottleneck.
    assert egress.reserve(2, 1000, at=0.0) == pytest.approx((0.002, 0.001, 0.002))


def test_messages_to_one_destination_queue_fifo_on_its_path(fake_clock):
    egress = _egress(fake_clock, paths={1: 4e6, 2: 16e6})
    assert egress.reserve(1, 1000, at=0.0) == pytest.approx((0.001, 0.0, 0.002))
    assert egress.reserve(1, 1000, at=0.0) == pytest.approx((0.002, 0.002, 0.004))
    assert egress.reserve(1, 1000, at=0.0) == pytest.approx((0.003, 0.004, 0.006))
    # Meanwhile the sender has moved on: destination 2 gets its message at 4 ms, before the
    # third message to 1 has crossed its path.
    assert egress.reserve(2, 1000, at=0.0) == pytest.approx((0.004, 0.003, 0.004))


def test_a_path_faster_than_the_uplink_changes_nothing(fake_clock):
    egress = _egress(fake_clock, paths={1: 80e6})
    assert egress.reserve(1, 10_000, at=0.0) == pytest.approx((0.01, 0.0, 0.01))
    assert egress.reserve(1, 10_000, at=0.0) == pytest.approx((0.02, 0.01, 0.02))


def test_an_unlimited_uplink_leaves_only_the_paths(fake_clock):
    egress = _egress(fake_clock, up=float("inf"), paths={1: 8e6, 2: 16e6})
    assert egress.reserve(1, 1000, at=0.0) == pytest.approx((0.0, 0.0, 0.001))
    assert egress.reserve(2, 1000, at=0.0) == pytest.approx((0.0, 0.0, 0.0005))
    assert egress.reserve(1, 1000, at=0.0) == pytest.approx((0.0, 0.001, 0.002))


def test_a_cut_frees_the_uplink_and_every_path_at_once(fake_clock):
    egress = _egress(fake_clock, paths={1: 4e6, 2: 4e6})
    egress.reserve(1, 1000, at=0.0)  # uplink 0-1 ms, path 0-2 ms
    egress.reserve(1, 1000, at=0.0)  # uplink 1-2 ms, path 2-4 ms
    egress.reserve(2, 1000, at=0.0)  # uplink 2-3 ms, path 2-4 ms
    # Cut at 1.5 ms: nothing had fully crossed its path, so every link is free from the cut.
    egress.cut(0.0015)
    assert egress.reserve(1, 1000, at=0.0015) == pytest.approx((0.0025, 0.0015, 0.0035))
    assert egress.reserve(2, 1000, at=0.0015) == pytest.approx((0.0035, 0.0025, 0.0045))


def test_a_cut_leaves_an_idle_path_as_it_was(fake_clock):
    egress = _egress(fake_clock, paths={1: 4e6, 2: 4e6})
    egress.reserve(2, 1000, at=0.0)  # path to 2 busy 0-2 ms
    egress.cut(0.005)  # long after: the path to 2 and the one to 1 (never used) stay free
    assert egress.paths[2].free_at == pytest.approx(0.002)
    assert egress.paths[1].free_at == float("-inf")


def test_a_cut_while_the_path_carries_the_message_frees_it_at_the_cut(fake_clock):
    egress = _egress(fake_clock, paths={1: 4e6})
    egress.reserve(1, 1000, at=0.0)  # uplink 0-1 ms, path 0-2 ms: cut at 0.5 ms
    egress.cut(0.0005)
    assert egress.reserve(1, 1000, at=0.0005) == pytest.approx((0.0015, 0.0005, 0.0025))
