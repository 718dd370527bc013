"""The keeper's rule as pure state: time moves only when every live node waits and every message
handed over has been admitted; it moves to the earliest instant anything is due and wakes only
the nodes due then, a machine's slots at a time; planned crashes and joins at their instants."""

from __future__ import annotations

import math

from launcher.running.timekeeper import Advance, Crash, Stuck, Sync, TimeKeeper
from transport.clock.keeper_link import Report

INF = math.inf


def report(
    due: float, admitted: int = 0, sent: dict | None = None, quiet: float = -INF, gen: int = 0
) -> Report:
    return Report(gen, due, quiet, admitted, sent or {})


def advanced(actions) -> dict[int, float]:
    return {a.node: a.t for a in actions if isinstance(a, Advance)}


def test_time_stands_still_until_every_node_waits_then_wakes_only_those_due():
    keeper = TimeKeeper(range(3))
    assert keeper.report(0, 0, report(0.0)) == []
    assert keeper.report(1, 0, report(0.0)) == []
    actions = keeper.report(2, 0, report(0.0))
    assert advanced(actions) == {0: 0.0, 1: 0.0, 2: 0.0} and keeper.gen == 1
    assert keeper.report(0, 0, report(0.5)) == []
    assert keeper.report(2, 0, report(0.2)) == []
    # node 1 still computes at t=0: nothing moves until it waits
    assert keeper.t == 0.0
    actions = keeper.report(1, 0, report(0.2))
    assert advanced(actions) == {1: 0.2, 2: 0.2}  # node 0 sleeps on to 0.5
    assert (keeper.t, keeper.gen) == (0.2, 2)


def test_messages_handed_over_hold_time_until_their_destination_admitted_them():
    keeper = TimeKeeper(range(2))
    keeper.report(0, 0, report(0.0))
    keeper.report(1, 0, report(0.0))
    keeper.report(1, 0, report(1.0))
    # node 0 handed 3 messages to node 1, which has reported admitting none of them
    actions = keeper.report(0, 0, report(1.0, sent={1: 3}))
    assert actions == [Sync(1, 0, 3)]
    assert keeper.t == 0.0
    # node 1 reports once it has admitted them; one of them is due at 0.4 there
    actions = keeper.report(1, 0, report(0.4, admitted=3))
    assert advanced(actions) == {1: 0.4}


def test_a_machine_wakes_at_most_its_slots_at_once_in_node_order():
    machines = {0: "a", 1: "a", 2: "a", 3: "b"}
    keeper = TimeKeeper(range(4), machine_of=machines, slots={"a": 2, "b": 1})
    for n in range(4):
        actions = keeper.report(n, 0, report(0.0))
    assert advanced(actions) == {0: 0.0, 1: 0.0, 3: 0.0}  # node 2 waits for a slot of "a"
    assert advanced(keeper.report(3, 0, report(1.0))) == {}  # machine b's slot: no one waits
    assert advanced(keeper.report(1, 0, report(1.0))) == {2: 0.0}  # same instant, same phase
    assert keeper.gen == 1


def test_a_planned_crash_comes_once_everything_up_to_its_instant_is_done():
    keeper = TimeKeeper(range(2), crashes=[(0.5, 1)])
    keeper.report(0, 0, report(0.0))
    keeper.report(1, 0, report(0.0))
    keeper.report(0, 0, report(1.0))
    # node 1 has something due at 0.5 itself: it acts there before the crash
    assert advanced(keeper.report(1, 0, report(0.5))) == {1: 0.5}
    actions = keeper.report(1, 0, report(0.7))
    assert actions[0] == Crash(1, 0.5)
    assert advanced(actions) == {0: 1.0}  # node 1's 0.7 never comes: it is dead
    assert keeper.followers[1].state == "dead"


def test_a_crashed_node_that_joins_again_holds_time_until_its_new_process_reports():
    keeper = TimeKeeper(range(2), crashes=[(0.3, 1)], joins=[(0.6, 1)])
    keeper.report(0, 0, report(0.0))
    keeper.report(1, 0, report(0.0))
    keeper.report(1, 0, report(2.0))
    actions = keeper.report(0, 0, report(0.4))
    assert actions[0] == Crash(1, 0.3) and advanced(actions) == {0: 0.4}
    assert keeper.report(0, 0, report(0.9)) == []  # 0.9 is past the join: wait for it
    assert keeper.report(1, 0, report(0.6)) == []  # the dead process's word counts no more
    actions = keeper.report(1, 1, report(0.6))  # its new process, the next incarnation
    assert advanced(actions) == {1: 0.6}


def test_a_node_that_dies_holds_nothing_neither_its_slot_nor_messages_to_it():
    keeper = TimeKeeper(range(3), slots={"local": 1})
    for n in range(3):
        keeper.report(n, 0, report(0.0))
    # node 0 holds the only slot; it dies: node 1 is woken
    assert advanced(keeper.depart(0)) == {1: 0.0}
    keeper.report(1, 0, report(1.0, sent={0: 5}))  # to the dead node: never admitted
    actions = keeper.report(2, 0, report(1.0))
    assert advanced(actions) == {1: 1.0}  # (node 2 still had its turn at 0.0 first)


def test_nodes_that_left_are_not_waited_for_and_the_run_ends_with_the_last():
    keeper = TimeKeeper(range(2))
    keeper.report(0, 0, report(0.0))
    keeper.report(1, 0, report(0.0))
    keeper.leave(0, 0)
    assert advanced(keeper.report(1, 0, report(3.0))) == {1: 3.0}
    assert not keeper.done
    keeper.leave(1, 0)
    assert keeper.done


def test_every_live_node_waiting_for_ever_is_stuck_not_a_silent_hang():
    keeper = TimeKeeper(range(2))
    keeper.report(0, 0, report(INF))
    assert keeper.report(1, 0, report(INF)) == [Stuck((0, 1))]


def test_each_node_goes_alone_until_the_earliest_instant_any_node_may_send():
    keeper = TimeKeeper(range(3), joins=[(0.9, 2)], crashes=[(0.1, 2)])
    keeper.report(0, 0, report(0.0))
    keeper.report(1, 0, report(0.0))
    actions = keeper.report(2, 0, report(0.0))
    assert {a.horizon for a in actions} == {-INF}  # nothing promised yet
    keeper.report(0, 0, report(0.01, quiet=0.64))  # its round ends at 0.64
    keeper.report(2, 0, report(INF, quiet=INF))  # it waits to crash and come back
    actions = keeper.report(1, 0, report(0.01, quiet=0.5))  # or a delivery at 0.5
    assert [(a.node, a.t, a.horizon) for a in actions] == [(0, 0.01, 0.5), (1, 0.01, 0.5)]
    keeper.report(0, 0, report(0.5, quiet=0.64))
    actions = keeper.report(1, 0, report(1.5, quiet=1.5))
    # node 2 crashed at 0.1: its new process may send from its join at 0.9 on
    assert actions[0] == Crash(2, 0.1)
    assert [(a.node, a.horizon) for a in actions[1:]] == [(0, 0.64)]


def test_a_node_woken_again_computes_on_the_core_it_had_when_that_one_is_free():
    keeper = TimeKeeper(range(3), slots={"local": 2})
    for n in range(3):
        actions = keeper.report(n, 0, report(0.0))
    assert [(a.node, a.slot) for a in actions] == [(0, 0), (1, 1)]
    assert [(a.node, a.slot) for a in keeper.report(0, 0, report(1.0))] == [(2, 0)]
    keeper.report(2, 0, report(1.0))
    actions = keeper.report(1, 0, report(1.0))
    assert [(a.node, a.slot) for a in actions] == [(0, 0), (1, 1)]


def test_why_time_waits_names_the_busy_nodes_and_the_messages_owed():
    keeper = TimeKeeper(range(3))
    keeper.report(0, 0, report(0.0, sent={2: 4}))
    keeper.report(2, 0, report(0.0, admitted=1))
    assert keeper.waiting_on() == {"busy": [1], "in_flight": {2: 3}, "joins": []}
