"""The host-wide compute gate: slots, earliest deadline first, and never stuck on a dead node."""

from __future__ import annotations

import threading
import time

import pytest

from transport import GateClient, GateQueue, GateServer

DEADLINE = 30.0  # wall seconds any wait below may take before it fails the test


def wait_until(condition, what: str) -> None:
    """Poll `condition` until it holds; fail the test, naming `what`, after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE} s: {what}")
        time.sleep(0.005)


def test_at_most_slots_hold_and_the_earliest_deadline_goes_first():
    gate = GateQueue(slots=2)
    assert gate.request("a", 5.0) == ["a"]
    assert gate.request("b", 9.0) == ["b"]
    assert gate.request("c", 7.0) == [] and gate.request("d", 3.0) == []
    assert gate.release("a") == ["d"]  # deadline 3 before 7, though it asked later
    assert gate.release("b") == ["c"]
    assert gate.holders == {"c", "d"} and not gate.waiting


def test_equal_deadlines_go_in_the_order_asked_and_a_repeat_keeps_one_place():
    gate = GateQueue(slots=1)
    assert gate.request("a", 1.0) == ["a"]
    gate.request("b", 2.0)
    gate.request("c", 2.0)
    gate.request("b", 2.0)  # asked twice: still one place
    assert gate.release("a") == ["b"] and gate.release("b") == ["c"] and not gate.waiting


def test_a_dead_holder_or_waiter_is_forgotten_and_never_blocks_the_others():
    gate = GateQueue(slots=1)
    gate.request("dead", 1.0)
    gate.request("waiting-dead", 2.0)
    gate.request("alive", 3.0)
    assert gate.forget("waiting-dead") == []
    assert gate.forget("dead") == ["alive"]
    assert gate.holders == {"alive"}
    with pytest.raises(ValueError):
        GateQueue(slots=0)


@pytest.mark.process
def test_the_server_serves_real_clients_and_frees_a_killed_holder():
    server = GateServer(slots=1)
    endpoint = server.start_and_bind()
    order, holding, overlap = [], [], []
    stop_dead, stop_waiters = threading.Event(), threading.Event()
    errors = []

    def client(node, deadline, hold, release=True, stop=None):
        stop = stop or threading.Event()
        gate = GateClient(node, endpoint, stop)
        try:
            gate.acquire(deadline)
            if stop.is_set():
                return
            holding.append(node)
            overlap.append(len(holding))
            order.append(node)
            time.sleep(hold)
            holding.remove(node)
            if release:
                gate.release()
            else:
                stop_dead.wait(10)  # "killed" while holding: never releases
        except BaseException as exc:
            errors.append(exc)
        finally:
            gate.close()

    dead = threading.Thread(target=client, args=(0, 0.0, 0.05, False))
    waiters: list[threading.Thread] = []
    try:
        dead.start()
        wait_until(lambda: order == [0], "node 0 holds the only slot")
        waiters = [
            threading.Thread(target=client, args=(node, deadline, 0.02, True, stop_waiters))
            for node, deadline in ((1, 9.0), (2, 1.0), (3, 5.0))
        ]
        for thread in waiters:
            thread.start()
        # All three have asked (the server queues them) and wait behind the dead holder.
        wait_until(lambda: len(server.queue.waiting) == 3, "all three wait in the gate's queue")
        assert order == [0] and server.queue.holders == {"0"} and server.grants == 1
        server.forget(0)  # what the launcher does when node 0's process has exited
        for thread in waiters:
            thread.join(DEADLINE)
        assert order == [0, 2, 3, 1]  # then earliest deadline first
        assert max(overlap) == 1 and not errors
    finally:
        stop_dead.set()
        stop_waiters.set()  # a failed wait above must not leave them waiting for ever
        server.close()
        for thread in [dead, *waiters]:
            if thread.is_alive():
                thread.join(DEADLINE)
    assert not server.is_alive() and server.error is None
