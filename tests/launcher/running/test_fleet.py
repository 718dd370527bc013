"""The fleet of a run's processes, on pipes and stand-in processes: what it hears goes to its
listener first, a death fails the start with the node's last words, the watchdog stops live
nodes through it and says why."""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from types import SimpleNamespace

import pytest

from launcher.running.fleet import Fleet
from launcher.running.outcome import StartupError
from launcher.running.virtual_time import handle_stalls
from node import control


class StandIn:
    """A process handle that has already exited (or runs until killed)."""

    def __init__(self, pid: int, exitcode: int | None = 0):
        self.pid, self.exitcode, self.killed = pid, exitcode, False

    def is_alive(self) -> bool:
        return self.exitcode is None

    def kill(self) -> None:
        self.killed, self.exitcode = True, -9

    def join(self, timeout=None) -> None:
        pass

    def close(self) -> None:
        pass


class PipeBackend:
    """Stand-in processes whose channels are pipes; evaluator results kept."""

    def __init__(self, nodes: dict, evaluators: dict | None = None):
        self.nodes, self.evaluators = nodes, evaluators or {}
        self.evaluations: list = []

    def start_evaluators(self, control_server) -> dict:
        return self.evaluators

    def start_nodes(self, control_server) -> dict:
        return self.nodes

    def record_evaluation(self, worker: int, record: dict) -> None:
        self.evaluations.append((worker, record))


class PipeControl:
    """The control server's `wait` over pipes: the channels with a message."""

    def wait(self, channels: list, timeout: float) -> list:
        return [c for c in channels if c.poll(0)]


@pytest.fixture
def pipes():
    opened = []

    def pair():
        ours, theirs = mp.Pipe(duplex=True)
        opened.extend([ours, theirs])
        return ours, theirs

    yield pair
    for conn in opened:
        conn.close()


def test_the_listener_hears_every_message_first_and_evaluators_are_numbered_below_zero(pipes):
    heard = []
    node_ours, node_theirs = pipes()
    eval_ours, eval_theirs = pipes()
    backend = PipeBackend({0: (StandIn(10), node_ours)}, {0: (StandIn(20), eval_ours)})
    fleet = Fleet(lambda sender, message: heard.append((sender, message)), start_timeout=1.0)
    fleet.start(backend, PipeControl())
    control.send(node_theirs, control.Failed(0, "Traceback\nValueError: boom"))
    control.send(eval_theirs, control.Evaluated(0, 1.0, {"accuracy": 0.5}))
    control.send(eval_theirs, control.EvaluatorDone(0))
    for conn in (node_ours, eval_ours):
        assert conn.poll(1.0)  # the pipe has it: the fake wait does not wait
    first = fleet.poll(0)  # one message per channel per poll
    assert (
        first
        == heard
        == [
            (0, control.Failed(0, "Traceback\nValueError: boom")),
            (-1, control.Evaluated(0, 1.0, {"accuracy": 0.5})),  # evaluator 0 is sender -1
        ]
    )
    assert fleet.poll(0) == heard[2:] == [(-1, control.EvaluatorDone(0))]
    assert backend.evaluations == [(0, {"node": 0, "t": 1.0, "accuracy": 0.5})]
    assert fleet.finish_evaluators(finish=True, grace=1.0) is True  # it said it was done
    assert fleet.pids() == {"nodes": {"0": 10}, "evaluators": {"0": 20}}


def test_a_node_dead_before_the_start_fails_it_with_its_last_words(pipes):
    ours_0, _ = pipes()
    ours_1, theirs_1 = pipes()
    nodes = {0: (StandIn(10, exitcode=None), ours_0), 1: (StandIn(11, exitcode=1), ours_1)}
    fleet = Fleet(lambda sender, message: None, start_timeout=60.0)
    fleet.start(PipeBackend(nodes), PipeControl())
    control.send(theirs_1, control.Failed(1, "Traceback\nValueError: no shard"))
    assert ours_1.poll(1.0)
    with pytest.raises(StartupError, match=r"nodes \[1\] died before the start: ValueError: no"):
        fleet.collect(control.Ready, time.monotonic())
    assert fleet.finished() == {1} and fleet.exitcode(0) is None


def test_a_fleet_that_never_started_stops_nothing_and_has_nothing_to_close():
    fleet = Fleet(lambda sender, message: None, start_timeout=1.0)
    assert fleet.poll(0) == [] and fleet.stop(grace=1.0) == {}
    assert fleet.finish_evaluators(finish=True, grace=1.0) is True  # none was owed
    assert fleet.close() is None


def stalled_keeper(*stalls, error=None):
    events = SimpleNamespace(stalls=queue.Queue())
    for stall in stalls:
        events.stalls.put(stall)
    return SimpleNamespace(error=error, stop=threading.Event(), events=events, now=lambda: 2.5)


def test_a_stall_stops_the_live_nodes_it_waits_on_and_says_why(pipes):
    procs = {n: StandIn(10 + n, exitcode=None if n != 2 else 0) for n in range(4)}
    fleet = Fleet(lambda sender, message: None, start_timeout=1.0)
    fleet.start(PipeBackend({n: (p, pipes()[0]) for n, p in procs.items()}), PipeControl())
    waiting = {"busy": [1], "in_flight": [2], "joins": []}
    stopped = handle_stalls(stalled_keeper(waiting), fleet, stall_timeout=30.0)
    assert list(stopped) == [1] and procs[1].killed and not procs[2].killed
    assert stopped[1].startswith("node 1 did not go idle within 30 wall seconds (time stood at")
    stopped = handle_stalls(stalled_keeper({"waiting_for_ever": [0, 3]}), fleet, 30.0)
    assert stopped == {
        n: f"node {n} waits for ever: every live node did, so time could not move" for n in (0, 3)
    }
    assert handle_stalls(stalled_keeper(error=RuntimeError("x")), fleet, 30.0) == {}


def test_a_failed_keeper_stops_every_live_node_once(pipes):
    procs = {0: StandIn(10, exitcode=None), 1: StandIn(11, exitcode=0)}
    fleet = Fleet(lambda sender, message: None, start_timeout=1.0)
    fleet.start(PipeBackend({n: (p, pipes()[0]) for n, p in procs.items()}), PipeControl())
    keeper = stalled_keeper({"waiting_for_ever": [0]}, error=RuntimeError("socket"))
    stopped = handle_stalls(keeper, fleet, stall_timeout=30.0)
    assert stopped == {0: "the time keeper failed: RuntimeError('socket')"}
    assert keeper.stop.is_set() and handle_stalls(keeper, fleet, 30.0) == {}
