"""A run's status: ok; degraded when some nodes died and the others went on to the end;
failed when nothing was emulated, the run was interrupted, or every node died."""

from launcher.report.summary import render
from launcher.running.outcome import Outcome
from tests.launcher.report.run_dirs import summary_to_render


def test_status_of_a_run():
    assert Outcome(exit_codes={0: 0, 1: 0}).status == "ok"
    degraded = Outcome(exit_codes={0: 0, 1: -9}, errors={1: "exited with code -9"})
    assert degraded.status == "degraded" and degraded.status != "ok"
    assert Outcome(exit_codes={0: -9, 1: 1}, errors={0: "x", 1: "y"}).status == "failed"
    assert Outcome(exit_codes={0: 0}, interrupted=True).status == "failed"
    assert Outcome(startup_error="nodes [1] died before the start").status == "failed"


def test_the_printed_summary_names_the_nodes_that_died():
    summary = summary_to_render() | {
        "status": "degraded",
        "interrupted": False,
        "departed": {"2": 16.04},
        "curve": [{"t": 20.0, "nodes": 3}],
    }
    first = render(summary).splitlines()[0]
    assert first == (
        "status            degraded: node 2 at t=16.0 s died; the others went on (3 at the end)"
    )


def test_a_crash_the_scenario_planned_leaves_the_run_ok():
    planned = Outcome(exit_codes={0: 0, 1: -9}, crashed={1: [5.02]}, killed={1})
    assert planned.status == "ok"
    both = Outcome(exit_codes={0: 1, 1: -9, 2: 0}, crashed={1: [5.02]}, killed={1}, errors={0: "b"})
    assert both.status == "degraded"


def test_the_printed_summary_says_what_the_scenario_did_and_cost():
    summary = summary_to_render()
    summary["totals"] |= {"messages_lost_down": 7, "messages_lost_partition": 2}
    summary |= {
        "scenario": [
            {"t": 1.0, "kind": "crash", "node": 3},
            {"t": 2.0, "kind": "leave", "node": 1},
            {"t": 4.0, "kind": "join", "node": 1, "model": "kept"},
        ],
        "curve": [{"t": 0.0, "nodes": 4}, {"t": 2.0, "nodes": 2}, {"t": 4.0, "nodes": 3}],
    }
    line = render(summary).splitlines()[1]
    assert line == (
        "scenario          1 crash, 1 leave, 1 join; nodes present 2-4; "
        "messages lost: down 7, link 0, partition 2, gone 0"
    )
