"""Scenario schedules: every kind of event expands into timed actions; a bad event is refused
before any process starts with its name, the problem and the fix."""

from __future__ import annotations

import pytest

from launcher.config.scenario import Scenario
from launcher.config.schema import validate
from node.checks import ConfigError
from tests.launcher.config.test_schema import composed


def kinds(scenario):
    return [(a.t, a.kind, a.node) for a in scenario.actions]


def test_membership_events_expand_per_node_in_time_order():
    s = Scenario(
        [
            {"t": 5.0, "join": [3], "model": "initial"},
            {"t": 1.0, "leave": [3]},
            {"t": 1.0, "crash": [4]},
            {"t": 2.0, "leave": [5]},
        ],
        num_nodes=6,
        duration=10,
    )
    assert kinds(s) == [
        (1.0, "leave", 3),
        (1.0, "crash", 4),
        (2.0, "leave", 5),
        (5.0, "join", 3),
    ]
    assert s.actions[-1].values == {"model": "initial"}
    assert s.actions[-1].event == "scenario.events[0]"


def test_a_node_whose_first_event_is_a_join_starts_down():
    s = Scenario([{"t": 4.0, "join": [7]}], num_nodes=8, duration=10)
    assert kinds(s) == [(4.0, "join", 7)]


def test_links_paths_partitions_and_heals():
    s = Scenario(
        [
            {"t": 2.0, "link": 1, "up_mbps": 0.5, "latency_ms": 20},
            {"t": 3.0, "path": [0, 2], "rate_mbps": 1.5},
            {"t": 4.0, "partition": [[0, 1], [2, 3]]},
            {"t": 6.0, "heal": True},
        ],
        num_nodes=4,
        duration=10,
    )
    link, path, partition, heal = s.actions
    assert (link.kind, link.node, link.values) == ("link", 1, {"up_mbps": 0.5, "latency_ms": 20})
    assert (path.node, path.values) == (0, {"dst": 2, "rate_mbps": 1.5})
    assert partition.values == {"groups": [[0, 1], [2, 3]]} and heal.kind == "heal"


def test_a_flapping_link_is_down_half_of_each_period_until_the_end():
    s = Scenario([{"t": 2.0, "flap": 3, "period": 2.0, "until": 7.0}], num_nodes=4, duration=10)
    assert kinds(s) == [
        (2.0, "link_down", 3),
        (3.0, "link_up", 3),
        (4.0, "link_down", 3),
        (5.0, "link_up", 3),
        (6.0, "link_down", 3),
        (7.0, "link_up", 3),
    ]


def test_churn_is_seeded_alternates_and_brings_every_node_back():
    events = [{"t": 0.0, "churn": 0.2, "period": 2.0, "seed": 7}]
    a = Scenario(events, num_nodes=20, duration=30)
    assert kinds(a) == kinds(Scenario(events, num_nodes=20, duration=30))  # seeded
    churned = {x.node for x in a.actions}
    assert len(churned) == 4  # 20% of 20
    for node in churned:
        mine = [x.kind for x in a.actions if x.node == node]
        assert mine[0] == "leave" and mine[-1] == "join"
        assert all(x != y for x, y in zip(mine, mine[1:], strict=False))  # alternating
    assert max(x.t for x in a.actions) <= 30
    other = Scenario([{**events[0], "seed": 8}], num_nodes=20, duration=30)
    assert kinds(other) != kinds(a)


def test_a_trace_file_replays_link_changes(tmp_path):
    trace = tmp_path / "bw.csv"
    trace.write_text("t,node,up_mbps,down_mbps,latency_ms\n1.5,2,3.0,,\n4,0,1,2,10\n")
    s = Scenario([], num_nodes=3, duration=10, trace=str(trace))
    assert [(a.t, a.node, a.values) for a in s.actions] == [
        (1.5, 2, {"up_mbps": 3.0}),
        (4.0, 0, {"up_mbps": 1.0, "down_mbps": 2.0, "latency_ms": 10.0}),
    ]


@pytest.mark.parametrize(
    ("events", "key", "words"),
    [
        ([{"t": 1.0, "crash": [9]}], "scenario.events[0].crash", "9 is not a node id"),
        ([{"t": 12.0, "leave": [1]}], "scenario.events[0].t", "not within the run"),
        (
            [{"t": 1.0, "leave": [1]}, {"t": 2.0, "join": [1]}, {"t": 3.0, "join": [1]}],
            "scenario.events[2]",
            "node 1 is up at t=3",
        ),
        ([{"t": "x%", "crash": [1]}], "scenario.events[0].t", "is not a time"),
        (
            [{"t": 1.0, "crash": [1]}, {"t": 2.0, "leave": [1]}],
            "scenario.events[1]",
            "already down",
        ),
        (
            [{"t": 1.0, "crash": [1]}, {"t": 1.0, "join": [1]}],
            "scenario.events[1]",
            "also changes at t=1",
        ),
        ([{"t": 1.0, "crash": [1], "leave": [2]}], "scenario.events[0]", "event kinds"),
        ([{"t": 1.0}], "scenario.events[0]", "no event kind"),
        ([{"t": 1.0, "crash": [1], "color": "red"}], "scenario.events[0].color", "unknown key"),
        ([{"t": "soon", "crash": [1]}], "scenario.events[0].t", "e.g. t: 5.0"),
        ([{"t": 1.0, "join": [1], "model": "best"}], "scenario.events[0].model", "kept"),
        ([{"t": 1.0, "link": 1}], "scenario.events[0]", "changes nothing"),
        ([{"t": 1.0, "link": 1, "up_mbps": 0}], "scenario.events[0].up_mbps", ">="),
        ([{"t": 1.0, "path": [1], "rate_mbps": 1}], "scenario.events[0].path", "two nodes"),
        ([{"t": 1.0, "partition": [[0, 1]]}], "scenario.events[0].partition", "two groups"),
        (
            [{"t": 1.0, "partition": [[0], [1]]}, {"t": 2.0, "partition": [[0, 1], [2]]}],
            "scenario.events[1]",
            "heal it first",
        ),
        ([{"t": 1.0, "heal": True}], "scenario.events[0]", "heals no partition"),
        ([{"t": 1.0, "flap": 1, "period": 1, "until": 20}], "scenario.events[0].until", "end"),
        ([{"t": 0.0, "churn": 1.5, "period": 1}], "scenario.events[0].churn", "fraction"),
    ],
)
def test_a_bad_event_is_refused_naming_it(events, key, words):
    with pytest.raises(ConfigError) as err:
        Scenario(events, num_nodes=4, duration=10)
    assert err.value.key == key, str(err.value)
    assert words in str(err.value)


def test_a_bad_trace_line_is_refused_naming_the_file_and_line(tmp_path):
    trace = tmp_path / "bw.csv"
    trace.write_text("t,node,up_mbps,down_mbps,latency_ms\n1.0,0,2,,\n2.0,9,1,,\n")
    with pytest.raises(ConfigError, match=r"bw.csv\) line 3.*9 is not a node id"):
        Scenario([], num_nodes=3, duration=10, trace=str(trace))
    trace.write_text("time,node,up\n")
    with pytest.raises(ConfigError, match="the header must be t,node,up_mbps"):
        Scenario([], num_nodes=3, duration=10, trace=str(trace))


# ---------------------------------------------------------------- in the run's config


def _run(*overrides):
    return validate(composed("eval.workers=2", "compute.gate_slots=2", *overrides))


def test_without_a_scenario_nothing_changes():
    run = _run()
    assert run.scenario == () and all(not link.up_changes for link in run.network.links)


def test_the_shipped_scenario_experiments_validate_into_their_actions():
    churn = _run("+experiment=churn10")
    churned = {a.node for a in churn.scenario}
    assert len(churned) == 6 and {a.kind for a in churn.scenario} == {"leave", "join"}
    assert all(3.4 <= a.t <= 34.0 for a in churn.scenario)  # from 10% of 34 s to the end

    halves = _run("+experiment=partition_halves")
    partition, heal = halves.scenario
    assert partition.values["groups"] == [list(range(30)), list(range(30, 60))]
    assert (partition.t, heal.t) == pytest.approx((6.8, 13.6))

    midrun = _run("+experiment=stragglers_midrun")
    assert midrun.network.name == "uniform"
    slow = [link for link in midrun.network.links if link.up_changes]
    assert len(slow) == 7 and slow[0].up_changes == ((17.0, 1.1),)
    assert slow[0].down_changes == ((17.0, 1.1),) and slow[0].up_mbps == 5.5

    kollaps = _run("+experiment=kollaps_dynamic")
    kinds = [(a.kind, a.node) for a in kollaps.scenario if a.kind != "link"]
    assert kinds == [("join", 1), ("join", 2), ("leave", 3), ("leave", 4), ("crash", 5)]
    assert kollaps.network.links[0].latency_changes == ((17.0, 20.0),)


def test_events_from_the_command_line_and_a_bad_one_named():
    run = _run(
        "num_nodes=4",
        "algorithm.degree=2",
        "scenario.events=[{t: 1.0, path: [0, 2], rate_mbps: 0.5}]",
    )
    assert run.network.links[0].path_changes == {2: ((1.0, 0.5),)}
    with pytest.raises(ConfigError) as err:
        _run("num_nodes=4", "algorithm.degree=2", "scenario.events=[{t: 1.0, crash: [7]}]")
    assert err.value.key == "scenario.events[0].crash"
    with pytest.raises(ConfigError) as err:
        _run("+scenario.wrong=1")
    assert err.value.key == "scenario.wrong"


def test_a_trace_file_drives_a_node_s_links_and_a_relative_path_is_the_working_folder_s(
    tmp_path, monkeypatch
):
    (tmp_path / "bw.csv").write_text(
        "t,node,up_mbps,down_mbps,latency_ms\n1.0,0,2.5,,\n3.0,0,,4,30\n"
    )
    monkeypatch.chdir(tmp_path)
    run = validate(
        composed("num_nodes=4", "algorithm.degree=2", "eval.workers=2", "scenario.trace=bw.csv"),
        cwd=str(tmp_path),
    )
    link = run.network.links[0]
    assert link.up_changes == ((1.0, 2.5),) and link.down_changes == ((3.0, 4.0),)
    assert link.latency_changes == ((3.0, 30.0),)
