"""The thread-free transport of virtual time, three nodes in this process on real sockets: what
arrives is staged and reaches the downlink in stamp order (phase, sender, count) whatever order
the sockets gave it, only what was sent before the current phase, and a caring wait learns when
its next message is due."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from transport import LinkSpec, Message, VirtualZmqTransport

KINDS = frozenset({"model"})
LINK = LinkSpec(up_mbps=8.0, down_mbps=8.0, latency_ms=1.0)


class StepClock:
    """A virtual clock moved by hand: the phase (`gen`) and instant a test says."""

    virtual = True

    def __init__(self):
        self.t, self.gen, self.source = 0.0, 1, None

    def now(self):
        return self.t

    def attach(self, source):
        self.source = source

    def wait(self, until, ready=None, stop=None):
        raise AssertionError("no wait in these tests")


@pytest.fixture
def nodes():
    stops = [threading.Event() for _ in range(3)]
    transports = [VirtualZmqTransport(i, LINK, KINDS, stops[i]) for i in range(3)]
    clocks = [StepClock() for _ in range(3)]
    try:
        endpoints = {i: t.bind() for i, t in enumerate(transports)}
        for i, transport in enumerate(transports):
            transport.connect(endpoints)
            transport.start(clocks[i])
        yield transports, clocks
    finally:
        for transport in transports:
            transport.close()


def model(src: int, dst: int, value: float) -> Message:
    return Message("model", src, dst, 0, 0, (np.full(100, value, np.float32),))


def read_until(transport, count: int) -> None:
    transport.wait_admitted(count, threading.Event())


def test_messages_reach_the_downlink_in_stamp_order_not_arrival_order(nodes):
    (a, b, c), clocks = nodes
    clocks[0].gen = 2  # node 0 sends in phase 2, first in wall time
    a.send([model(0, 2, 0.0)])
    clocks[1].gen = 1  # node 1 in phase 1, later in wall time: its message goes first
    b.send([model(1, 2, 1.0)])
    read_until(c, 2)
    assert c.admitted == 2 and a.take_sent() == {2: 1} and b.take_sent() == {2: 1}
    clocks[2].gen, clocks[2].t = 3, 1.0
    c.advance(1.0, 3)
    got = [c.receive() for _ in range(2)]
    assert [m.src for m in got] == [1, 0]  # both at the same instant: phase 1's is booked first
    assert got[0].t_start == got[1].t_start == 0.0


def test_what_was_sent_in_the_current_phase_waits_for_the_next(nodes):
    (a, _, c), clocks = nodes
    clocks[0].gen = 5
    a.send([model(0, 2, 0.0)])
    read_until(c, 1)
    clocks[2].gen, clocks[2].t = 5, 1.0
    c.advance(1.0, 5)  # the phase it was sent in: not handed over yet
    assert c.receive() is None and len(c.staged) == 1
    c.advance(1.0, 6)
    assert c.receive().src == 0


def test_a_node_learns_when_what_it_read_is_first_seen(nodes):
    (a, _, c), clocks = nodes
    clocks[0].t = 0.25
    a.send([model(0, 2, 0.0)])
    read_until(c, 1)
    admitted, due, answers = c.pending()
    assert admitted == 1 and not answers
    assert due == pytest.approx(0.25 + 0.001)  # its arrival: sent at 0.25, 1 ms of latency
