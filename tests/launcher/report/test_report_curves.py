"""Pure pieces of reporting: curves, time to accuracy."""

import pytest

from launcher.report.curves import accuracy_curve
from launcher.report.metric import time_to_targets


def _evals(rows):
    return [{"node": n, "t": t, "accuracy": a, "loss": 1 - a} for n, t, a in rows]


def test_curve_uses_only_instants_every_node_reached_and_time_to_target():
    evals = _evals(
        [
            (0, 0.0, 0.1),
            (1, 0.0, 0.1),
            (0, 2.0, 0.5),
            (1, 2.0, 0.3),
            (0, 4.0, 0.9),
            (1, 4.0, 0.7),
            (0, 6.0, 0.95),
        ]
    )
    curve = accuracy_curve(evals, num_nodes=2)
    assert [p["t"] for p in curve] == [0.0, 2.0, 4.0]
    assert curve[1] == pytest.approx(
        {
            "t": 2.0,
            "mean": 0.4,
            "min": 0.3,
            "max": 0.5,
            "loss": 0.6,
            "loss_min": 0.5,
            "loss_max": 0.7,
            "nodes": 2,
        }
    )
    # 0.4 is met exactly at t=2; 0.6 lies 1/2 of the way from 0.4 (t=2) to 0.8 (t=4)
    assert time_to_targets(curve, (0.4, 0.6)) == pytest.approx({"0.4": 2.0, "0.6": 3.0})
    assert time_to_targets(curve, (0.99,)) == {"0.99": None}
    assert time_to_targets(curve, (0.05,)) == {"0.05": 0.0}


def test_curve_carries_the_global_loss_when_every_node_reports_it():
    evals = [
        {"node": 0, "t": 1.0, "accuracy": 0.2, "loss": 1.1, "global_loss": 1.3},
        {"node": 1, "t": 1.0, "accuracy": 0.4, "loss": 0.9, "global_loss": 1.1},
    ]
    (point,) = accuracy_curve(evals, num_nodes=2)
    assert point["global_loss"] == pytest.approx(1.2) and point["loss_max"] == 1.1
    assert "global_loss" not in accuracy_curve(_evals([(0, 0.0, 0.1), (1, 0.0, 0.2)]), 2)[0]


def test_after_a_node_died_the_curve_goes_on_over_the_live_nodes():
    evals = _evals(
        [
            (0, 0.0, 0.1),
            (1, 0.0, 0.1),
            (2, 0.0, 0.1),
            (0, 2.0, 0.5),
            (1, 2.0, 0.3),
            (2, 2.0, 0.2),  # node 2 dies at t=3.1: its snapshot at t=2 still counts
            (0, 4.0, 0.9),
            (1, 4.0, 0.7),
        ]
    )
    assert [p["t"] for p in accuracy_curve(evals, 3)] == [0.0, 2.0]  # waits for node 2
    curve = accuracy_curve(evals, 3, departed={2: 3.1})
    assert [(p["t"], p["nodes"]) for p in curve] == [(0.0, 3), (2.0, 3), (4.0, 2)]
    assert curve[1]["min"] == 0.2 and curve[2]["mean"] == pytest.approx(0.8)


def test_a_node_a_scenario_took_away_counts_only_outside_its_absences():
    evals = _evals(
        [(n, t, 0.1 * (n + 1)) for n in range(3) for t in (0.0, 2.0, 4.0, 6.0)]
        + [(2, 3.0, 0.9)]  # written as it was killed at 3.0 (the kill came late): not counted
    )
    # node 1 away on [1.5, 4.0), node 2 crashed at 3.0 for good
    curve = accuracy_curve(evals, 3, absent={1: [[1.5, 4.0]], 2: [[3.0, None]]})
    # (no point at 3.0: node 0, present, has none there)
    assert [(p["t"], p["nodes"]) for p in curve] == [(0.0, 3), (2.0, 2), (4.0, 2), (6.0, 2)]
    assert curve[1]["max"] == pytest.approx(0.3) and curve[2]["mean"] == pytest.approx(0.15)
