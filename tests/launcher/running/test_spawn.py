"""Launcher start-up: a node whose pipe is gone between two start-up steps fails the start."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from launcher.running.fleet import Fleet
from launcher.running.outcome import StartupError
from node import control


class PipeBackend:
    """Nodes that are only their channels: no evaluators, no processes."""

    def __init__(self, conns: dict):
        self.conns = conns

    def start_evaluators(self, control_server) -> dict:
        return {}

    def start_nodes(self, control_server) -> dict:
        return {node: (None, conn) for node, conn in self.conns.items()}


def test_a_broadcast_to_a_dead_node_is_a_startup_error_naming_it():
    fleet = Fleet(listener=lambda sender, message: None, start_timeout=1.0)
    alive_parent, alive_child = mp.Pipe(duplex=True)
    dead_parent, dead_child = mp.Pipe(duplex=True)
    dead_child.close()  # what a SIGKILLed node leaves behind
    fleet.start(PipeBackend({0: alive_parent, 1: dead_parent}), control_server=None)
    try:
        with pytest.raises(StartupError, match="node 1 is gone"):
            for _ in range(3):  # the first write into a closed pipe may still be buffered
                fleet.broadcast(control.Calibrate(steps=1))
        assert alive_child.poll(1.0)
    finally:
        for conn in (alive_parent, alive_child, dead_parent):
            conn.close()


def test_the_crash_schedule_hands_out_each_due_crash_once_in_time_order():
    from launcher.running.processes import CrashSchedule
    from transport import Action

    schedule = CrashSchedule(
        [Action(3.0, 1, "crash", 4), Action(1.0, 0, "crash", 2), Action(2.0, 2, "leave", 1)]
    )
    assert schedule.next_at() == 1.0 and schedule.due(0.9) == []
    assert schedule.due(1.0) == [2] and schedule.due(2.5) == [] and schedule.next_at() == 3.0
    assert schedule.due(10.0) == [4] and schedule.due(11.0) == []
    assert schedule.next_at() == float("inf")
