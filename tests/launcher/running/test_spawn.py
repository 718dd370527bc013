"""Launcher start-up: a node whose pipe is gone between two start-up steps fails the start;
a crashed node's new process is recorded by the launch and let in on the run's clock."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
from types import SimpleNamespace

import pytest

from launcher.running.fleet import Fleet
from launcher.running.outcome import StartupError
from launcher.running.spawn import Launch
from node import control


class StandInBackend:
    """Nodes given as (process handle, channel), no evaluators; a new process is pid 99."""

    def __init__(self, nodes: dict):
        self.nodes, self.started = nodes, []

    def start_evaluators(self, control_server) -> dict:
        return {}

    def start_nodes(self, control_server) -> dict:
        return self.nodes

    def start_node(self, spec, control_server):
        self.started.append(spec)
        return SimpleNamespace(pid=99, exitcode=None, join=lambda timeout: None), None


def test_a_broadcast_to_a_dead_node_is_a_startup_error_naming_it():
    fleet = Fleet(listener=lambda sender, message: None, start_timeout=1.0)
    alive_parent, alive_child = mp.Pipe(duplex=True)
    dead_parent, dead_child = mp.Pipe(duplex=True)
    dead_child.close()  # what a SIGKILLed node leaves behind
    nodes = {0: (None, alive_parent), 1: (None, dead_parent)}
    fleet.start(StandInBackend(nodes), control_server=None)
    try:
        with pytest.raises(StartupError, match="node 1 is gone"):
            for _ in range(3):  # the first write into a closed pipe may still be buffered
                fleet.broadcast(control.Calibrate(steps=1))
        assert alive_child.poll(1.0)
    finally:
        for conn in (alive_parent, alive_child, dead_parent):
            conn.close()


@dataclasses.dataclass(frozen=True)
class Spec:
    node_id: int
    start_at: float = 0.0
    endpoint: str | None = None


def test_a_restarted_node_is_watched_again_and_joins_on_the_keepers_clock(tmp_path):
    plan = SimpleNamespace(
        run=SimpleNamespace(start_timeout=1.0), nodes=[Spec(0)], run_dir=tmp_path
    )
    launch = Launch(plan)
    dead = SimpleNamespace(pid=10, exitcode=-9, join=lambda timeout: None)
    backend = StandInBackend({0: (dead, None)})
    launch.fleet.start(backend, control_server=None)
    launch.peers = {0: "tcp://127.0.0.1:5000"}  # what the barrier found
    launch.outcome.exit_codes[0], launch.outcome.killed = -9, {0}  # what the crash left
    launch.restart(0, 6.0)
    assert backend.started == [Spec(0, start_at=6.0, endpoint="tcp://127.0.0.1:5000")]
    assert launch.fleet.exitcode(0) is None and launch.outcome.exit_codes == {}
    assert launch.outcome.killed == set() and launch.outcome.rejoined == {0: [6.0]}
    assert json.loads((tmp_path / "pids.json").read_text())["nodes"] == {"0": 99}
    launch.keeper = SimpleNamespace(  # a time keeper at emulated 3 s, generation 7
        address=SimpleNamespace(endpoint="tcp://keeper"), keeper=SimpleNamespace(t=3.0, gen=7)
    )
    start = launch.start_message(0, probe_timeout=1.0)
    assert start == control.Start(0.0, 1.0, "tcp://keeper", 1, 3.0, 7)  # its 2nd incarnation


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
