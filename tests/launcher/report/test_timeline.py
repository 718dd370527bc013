"""The run's timeline on 4 real nodes of the in-memory twin: valid trace JSON, one flow per
delivered message, compute slices adding up to the steps' emulated time, and the picture."""

from __future__ import annotations

import json

import pytest

from launcher.report.timeline import chrome_trace, node_events, write_timeline
from tests.node import twin

ARGS = [
    "num_nodes=4",
    "duration=3",
    "eval.interval=1",
    "dataset.num_samples=3000",
    "network.straggler_fraction=null",
    "network.num_stragglers=1",
    "timeline.enabled=true",
]


@pytest.fixture(scope="module", params=["divshare", "dpsgd"])
def ran(request, tmp_path_factory, shared_data_root):
    """A run of an algorithm that never waits and of one that waits for its neighbours."""
    run_dir = tmp_path_factory.mktemp(f"timeline-{request.param}")
    degree = ["algorithm.degree=2"]
    plan = twin.plan(run_dir, shared_data_root, *ARGS, f"algorithm={request.param}", *degree)
    result = twin.run(plan)
    assert not result.errors, result.errors
    summary = {"num_nodes": 4, "duration_emulated_s": 3.0, "algorithm": request.param}
    return plan, result, summary


def test_the_trace_is_valid_json_with_one_flow_per_delivered_message(ran, tmp_path):
    plan, result, summary = ran
    trace = json.loads(json.dumps(chrome_trace(node_events(plan.run_dir), summary)))  # serialisable
    events = trace["traceEvents"]
    assert all({"ph", "pid"} <= set(e) for e in events)
    starts = [e for e in events if e["ph"] == "s"]
    finishes = {e["id"]: e for e in events if e["ph"] == "f"}
    delivered = sum(result.stats(n).delivered_messages for n in range(4))
    assert delivered > 0 and len(starts) == len(finishes) == delivered
    for start in starts:  # a flow runs forward in time, from its sender to another node
        end = finishes[start["id"]]
        assert end["ts"] >= start["ts"] and end["pid"] != start["pid"]
    assert trace["otherData"]["messages"] == delivered


def test_compute_slices_add_up_to_the_steps_emulated_time(ran):
    plan, result, summary = ran
    events = chrome_trace(node_events(plan.run_dir), summary)["traceEvents"]
    for n in range(4):
        computed = sum(e["dur"] for e in events if e.get("name") == "compute" and e["pid"] == n)
        steps = result.nodes[n].counters["steps"]
        assert steps > 0
        assert computed == pytest.approx(steps * plan.nodes[n].step_time * 1e6, rel=1e-9)
    merges = [e for e in events if e.get("name") == "merge"]
    assert len(merges) == sum(result.nodes[n].counters["rounds"] for n in range(4))


def test_a_synchronous_algorithm_waits_and_the_picture_is_drawn(ran, tmp_path):
    plan, result, summary = ran
    events = chrome_trace(node_events(plan.run_dir), summary)["traceEvents"]
    waits = [e for e in events if e.get("name") == "wait"]
    if summary["algorithm"] == "dpsgd":  # the straggler's neighbours wait for its model
        assert waits and all(e["dur"] > 0 for e in waits)
    else:
        assert not waits  # DivShare never waits
    other = write_timeline(plan.run_dir, summary, lanes=4, window=2.0)
    assert (plan.run_dir / "timeline.png").stat().st_size > 10_000
    assert json.loads((plan.run_dir / "timeline.json").read_text())["otherData"] == other


def test_events_beyond_the_bound_are_counted_not_kept(tmp_path):
    from node.timeline import Timeline

    timeline = Timeline(tmp_path / "timeline" / "000.jsonl", limit=3)
    for i in range(5):
        timeline.compute(i, i + 0.5)
    timeline.close()
    lines = (tmp_path / "timeline" / "000.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1]) == {"k": "dropped", "n": 2}
    trace = chrome_trace(node_events(tmp_path), {"num_nodes": 1})
    assert trace["otherData"]["events_not_kept"] == {0: 2}
