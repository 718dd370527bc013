"""A node's view of whom it can count on: the same members and epoch on every member at every
instant of a scenario (leave, join, partition, flap), and deaths the launcher announces."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from node.membership import Membership
from transport import Action

N = 6
SCENARIO = (
    Action(1.0, 0, "leave", 4),
    Action(2.0, 1, "partition", None, {"groups": [[0, 1], [2, 3]]}),  # 5 forms a third group
    Action(3.0, 2, "link_down", 1),  # node 1's link flaps: it is alone while down
    Action(3.5, 3, "link_up", 1),
    Action(4.0, 4, "heal", None),
    Action(5.0, 5, "join", 4),
)


def membership(node: int, scenario=SCENARIO) -> Membership:
    spec = SimpleNamespace(node_id=node, num_nodes=N, scenario=scenario, checkpoint=False)
    return Membership(spec, run_dir="/nonexistent")


EXPECTED = [  # t, node 0's members, the epoch
    (0.0, (0, 1, 2, 3, 4, 5), 0),
    (1.0, (0, 1, 2, 3, 5), 1),
    (2.5, (0, 1), 2),
    (3.2, (0,), 3),
    (3.5, (0, 1), 4),
    (4.0, (0, 1, 2, 3, 5), 5),
    (5.0, (0, 1, 2, 3, 4, 5), 6),
]


@pytest.mark.parametrize(("t", "members", "epoch"), EXPECTED)
def test_node_0_sees_the_scenario_s_members_with_one_epoch_per_change(t, members, epoch):
    view = membership(0).view(t)
    assert (view.members, view.epoch) == (members, epoch)


@pytest.mark.parametrize("t", [x / 4 for x in range(25)])
def test_every_member_of_a_view_has_the_same_view(t):
    """Reachability at an instant is an equivalence (a cut node alone): so each ring forms
    alike on all its members, and the epoch is the same count everywhere."""
    views = {n: membership(n).view(t) for n in range(N)}
    for n, view in views.items():
        assert n in view.members
        for m in view.members:
            if membership(n).reach.is_up(n, t):
                assert views[m] == view, (t, n, m)


def test_an_announced_death_leaves_every_view_from_its_instant_and_counts_as_a_change():
    mine = membership(0, scenario=())
    assert mine.view(7.0).members == tuple(range(N)) and mine.view(7.0).epoch == 0
    mine.depart(3, 2.5)
    mine.depart(3, 4.0)  # told twice: the first instant holds
    assert mine.view(2.0).members == tuple(range(N)) and mine.view(2.0).epoch == 0
    assert mine.view(2.5).members == (0, 1, 2, 4, 5) and mine.view(2.5).epoch == 1
    assert mine.departed == ((3, 2.5),)
    with_scenario = membership(0)
    with_scenario.view(2.5)  # cached before the announcement: must not stick
    with_scenario.depart(1, 2.2)
    assert with_scenario.view(2.5).members == (0,) and with_scenario.view(2.5).epoch == 3
