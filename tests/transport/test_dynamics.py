"""A scenario in the transport, stepped by hand on a fake clock: who reaches whom over time,
rates and latencies that change mid-run (for what is already queued too), and messages to a
node that is down or partitioned off lost and counted, never queued."""

from __future__ import annotations

import numpy as np
import pytest

from transport import (
    Action,
    Downlink,
    DownlinkQueue,
    Egress,
    LinkSpec,
    LinkStats,
    Message,
    Reachability,
    TokenBucket,
    Uplink,
)
from transport.wire import pack, wire_size


def _act(t, kind, node=None, **values):
    return Action(t, 0, kind, node, values)


def _msg(src, dst, t_start=0.0, t_end=0.0, round_=0):
    vec = np.zeros(250, dtype=np.float32)
    return Message("fragment", src, dst, round_, 0, (vec,), {}, t_start, t_end)


SIZE = wire_size(_msg(0, 1))


# ---------------------------------------------------------------- reachability


def test_a_node_is_down_from_its_crash_or_leave_until_it_joins():
    reach = Reachability([_act(2.0, "leave", 1), _act(5.0, "join", 1), _act(7.0, "crash", 1)])
    assert [reach.is_up(1, t) for t in (1.9, 2.0, 4.9, 5.0, 6.9, 7.0, 100.0)] == [
        True,
        False,
        False,
        True,
        True,
        False,
        False,
    ]
    assert reach.lost(0, 1, 3.0) == "down" and reach.lost(1, 0, 3.0) == "down"
    assert reach.lost(0, 1, 5.5) is None and reach.lost(0, 2, 3.0) is None
    assert reach.up_periods(1, duration=10.0) == [(0.0, 2.0), (5.0, 7.0)]
    assert reach.down_spans(1) == [(2.0, 5.0), (7.0, float("inf"))]


def test_a_node_whose_first_event_is_a_join_is_down_from_the_start():
    reach = Reachability([_act(4.0, "join", 3)])
    assert not reach.is_up(3, 0.0) and reach.is_up(3, 4.0)
    assert reach.up_periods(3, duration=10.0) == [(4.0, 10.0)]
    assert reach.up_periods(0, duration=10.0) == [(0.0, 10.0)]


def test_a_flapping_node_loses_its_links_in_its_down_phases_but_stays_up():
    reach = Reachability(
        [_act(2.0, "link_down", 1), _act(3.0, "link_up", 1), _act(4.0, "link_down", 1)]
    )
    assert reach.lost(0, 1, 2.5) == "link" and reach.lost(1, 0, 2.5) == "link"
    assert reach.lost(0, 1, 3.5) is None and reach.lost(0, 1, 9.0) == "link"
    assert reach.is_up(1, 2.5)


def test_a_partition_cuts_between_its_groups_until_healed_and_unlisted_nodes_form_one_more():
    reach = Reachability([_act(1.0, "partition", groups=[[0, 1], [2, 3]]), _act(4.0, "heal")])
    assert reach.lost(0, 1, 2.0) is None and reach.lost(2, 3, 2.0) is None
    assert reach.lost(0, 2, 2.0) == "partition" and reach.lost(3, 1, 2.0) == "partition"
    assert reach.lost(4, 0, 2.0) == "partition" and reach.lost(4, 5, 2.0) is None
    assert reach.lost(0, 2, 0.5) is None and reach.lost(0, 2, 4.0) is None


def test_without_a_scenario_everyone_reaches_everyone():
    reach = Reachability([_act(1.0, "link", 2, up_mbps=1.0)])  # a rate change: not its business
    assert reach.static and reach.lost(0, 2, 1.5) is None


# ---------------------------------------------------------------- rates and latency over time


def test_a_rate_change_applies_to_the_rest_of_a_message_already_on_the_link(fake_clock):
    bucket = TokenBucket(1e6, clock=fake_clock, changes=[(1.0, 2e6)])
    # 1.5 Mbit from 0.5: 0.5 Mbit by t=1 at 1 Mbit/s, the other 1 Mbit at 2 Mbit/s by 1.5.
    assert bucket.reserve(187_500, at=0.5) == (0.5, pytest.approx(1.5))
    # Booked at 0.5 too but queued behind it: all of it at the new rate.
    assert bucket.reserve(250_000, at=0.5) == (pytest.approx(1.5), pytest.approx(2.5))
    assert bucket.rate_at(0.99) == 1e6 and bucket.rate_at(1.0) == 2e6


def test_a_slower_rate_from_an_instant_and_an_unlimited_one_after_it(fake_clock):
    bucket = TokenBucket(8e6, clock=fake_clock, changes=[(1.0, 8e5), (3.0, float("inf"))])
    assert bucket.reserve(1_000_000, at=0.0) == (0.0, pytest.approx(1.0))  # 8 Mbit at 8 Mbit/s
    _, finish = bucket.reserve(400_000, at=0.5)  # 3.2 Mbit at 0.8 Mbit/s: 2 by t=3, rest free
    assert finish == pytest.approx(3.0)


def test_a_bad_rate_change_is_refused(fake_clock):
    with pytest.raises(ValueError):
        TokenBucket(1e6, clock=fake_clock, changes=[(1.0, 0.0)])


def test_a_message_takes_the_latency_in_force_when_it_starts(fake_clock):
    down = Downlink(float("inf"), 0.010, clock=fake_clock, latency_changes=[(2.0, 0.100)])
    assert down.deliver_at(SIZE, 1.0, 1.0) == pytest.approx(1.010)
    assert down.deliver_at(SIZE, 2.0, 2.0) == pytest.approx(2.100)


def test_link_spec_turns_a_scenario_s_changes_into_its_buckets(fake_clock):
    spec = LinkSpec(
        up_mbps=10.0,
        down_mbps=20.0,
        latency_ms=5.0,
        up_changes=((1.0, 1.0),),
        down_changes=((2.0, 2.0),),
        latency_changes=((3.0, 50.0),),
        path_changes={2: ((4.0, 0.5),)},
    )
    egress = spec.egress([1, 2], fake_clock)
    assert egress.uplink.rate_at(1.0) == 1e6 and set(egress.paths) == {2}
    assert egress.paths[2].rate_at(0.0) == float("inf") and egress.paths[2].rate_at(4.0) == 5e5
    down = spec.downlink(fake_clock)
    assert down.bucket.rate_at(2.0) == 2e6 and down.latency_at(3.0) == pytest.approx(0.05)


# ---------------------------------------------------------------- the uplink and the downlink


def test_a_message_to_an_unreachable_peer_is_lost_counted_and_never_holds_the_link(fake_clock):
    reach = Reachability([_act(1.0, "crash", 1), _act(1.0, "partition", groups=[[0, 3], [2]])])
    stats = LinkStats()
    bucket = TokenBucket(SIZE * 8 / 0.001, clock=fake_clock)  # 1 ms per message
    uplink = Uplink(Egress(bucket), stats, reach=reach, node_id=0)
    _, booked = uplink.take(tuple(pack(_msg(0, d)) for d in (1, 2, 1)), False, 0.5)
    assert len(booked) == 3  # before the crash and the partition: all go
    _, booked = uplink.take(tuple(pack(_msg(0, d)) for d in (1, 2, 3)), False, 2.0)
    assert [b.packed.dst for b in booked] == [3] and booked[0].t_start == 2.0
    totals = stats.totals()
    assert totals["messages_lost_down"] == 1 and totals["messages_lost_partition"] == 1
    assert totals["bytes_lost"] == 2 * SIZE and stats.dropped_messages == 0


def test_a_message_delivered_while_its_receiver_is_down_is_lost_there(fake_clock):
    reach = Reachability([_act(1.0, "leave", 1), _act(2.0, "join", 1)])
    stats = LinkStats()
    queue = DownlinkQueue(
        Downlink(float("inf"), 0.0, clock=fake_clock), stats, 1 << 20, reach, node_id=1
    )
    for t in (0.5, 1.5, 2.5):
        queue.admit(_msg(0, 1, t, t), SIZE)
    delivered = [m.t_start for m, _ in queue.release(3.0)]
    assert delivered == [0.5, 2.5]
    assert stats.totals()["messages_lost_down"] == 1 and stats.lost_bytes == 0


def test_up_since_is_the_start_of_the_up_period_holding_an_instant():
    reach = Reachability([_act(2.0, "crash", 1), _act(5.0, "join", 1)])
    assert reach.up_since(1, 1.0) == 0.0 and reach.up_since(1, 3.0) is None
    assert reach.up_since(1, 7.0) == 5.0 and reach.up_since(0, 7.0) == 0.0


def test_a_flush_notifies_only_the_peers_it_can_reach(fake_clock):
    reach = Reachability([_act(1.0, "crash", 1)])
    uplink = Uplink(Egress(TokenBucket(1e9, clock=fake_clock)), LinkStats(), reach=reach, node_id=0)
    uplink.take(tuple(pack(_msg(0, d)) for d in (1, 2)), False, 0.5)
    notify, _ = uplink.take((), True, 1.5)
    assert notify == [2]  # node 1 is down: nothing of this traffic is left there to discard


def test_the_joins_that_bring_a_crashed_node_back_are_the_ones_needing_a_new_process():
    from transport.dynamics import crash_rejoins

    actions = [
        _act(1.0, "crash", 1),
        _act(2.0, "join", 1),  # back from a crash: a new process
        _act(3.0, "leave", 2),
        _act(4.0, "join", 2),  # back from a leave: the same process
        _act(5.0, "join", 3),  # a first join: the process is there from the start
        _act(6.0, "crash", 1),
        _act(7.0, "join", 1),
    ]
    assert [(a.t, a.node) for a in crash_rejoins(actions)] == [(2.0, 1), (7.0, 1)]
