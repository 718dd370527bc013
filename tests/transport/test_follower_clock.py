"""A node's end of the launcher's virtual clock, against a real keeper socket in this process and
a fake transport: it reports when it waits, answers SYNC once the messages are in, goes on at
ADVANCE, goes alone through its instants before the keeper's horizon, and after LEAVE reads
its socket until END."""

from __future__ import annotations

import math
import threading

import pytest

from transport.clock.follower import FollowerClock
from transport.clock.keeper_link import (
    LEAVE,
    REPORT,
    KeeperSocket,
    decode_report,
    encode_advance,
    encode_end,
    encode_sync,
)


class FakeSource:
    """What the clock asks of a transport, scripted: `arrive` adds admitted messages."""

    def __init__(self):
        self.admitted, self.delivery, self.answers = 0, math.inf, False
        self.sent = {3: 2}
        self.advanced: list[tuple[float, int]] = []
        self.discarded = 0
        self.cond = threading.Condition()

    def quiesce(self, stop):
        pass

    def take_sent(self):
        sent, self.sent = self.sent, {}
        return sent

    def pending(self):
        return self.admitted, self.delivery, self.answers

    def wait_admitted(self, count, stop):
        with self.cond:
            self.cond.wait_for(lambda: self.admitted >= count or stop.is_set(), timeout=30)

    def arrive(self, n):
        with self.cond:
            self.admitted += n
            self.cond.notify_all()

    def advance(self, t, gen):
        self.advanced.append((t, gen))

    def discard(self):
        self.discarded += 1


@pytest.fixture
def keeper():
    sock = KeeperSocket()
    yield sock
    sock.close()


def next_frame(keeper: KeeperSocket) -> tuple[int, bytes]:
    while keeper.poll(10_000):
        got = keeper.receive()
        if got:
            node, _incarnation, kind, frame = got[0]
            return node, frame
    pytest.fail("no frame from the follower")


def test_a_wait_reports_and_ends_at_the_keepers_advance_with_sync_answered(keeper):
    source, stop = FakeSource(), threading.Event()
    clock = FollowerClock(keeper.address, node=2)
    result = {}

    def node_thread():
        clock.open()
        clock.attach(source)
        clock.quiet_until(0.64)
        try:
            clock.wait(0.5, stop=stop)
            result["t"] = clock.now()
        finally:
            clock.close()

    thread = threading.Thread(target=node_thread)
    thread.start()
    try:
        node, frame = next_frame(keeper)
        report = decode_report(frame)
        assert (node, report.due, report.quiet, report.sent) == (2, 0.5, 0.64, {3: 2})
        keeper.send(2, 0, encode_sync(4))  # report again once 4 messages are in
        source.delivery = 0.3  # one of them is due at 0.3: it acts on it at its step's end
        source.arrive(4)
        report = decode_report(next_frame(keeper)[1])
        assert (report.admitted, report.due, report.quiet, report.sent) == (4, 0.5, 0.5, {})
        keeper.send(2, 0, encode_advance(1, 0.5, 0.9, 0))
        thread.join(30)
    finally:
        stop.set()
        thread.join(30)
    assert result == {"t": 0.5} and source.advanced == [(0.5, 1)]


def test_before_the_horizon_a_node_goes_alone_and_after_leave_reads_until_end(keeper):
    source, stop = FakeSource(), threading.Event()
    clock = FollowerClock(keeper.address, node=0, t=0.0, gen=4)
    clock.horizon = 0.3
    done = threading.Event()

    def node_thread():
        clock.open()
        clock.attach(source)
        try:
            for step in range(1, 5):  # 0.1, 0.2 alone; 0.3 is the horizon: the keeper's
                clock.sleep_until(0.1 * step, stop)
                if step == 2:
                    done.set()
            clock.leave(stop)
        finally:
            clock.close()

    thread = threading.Thread(target=node_thread)
    thread.start()
    try:
        assert done.wait(30) and source.advanced == [(0.1, 4), (0.2, 4)]
        assert clock.alone == 2  # no report for 0.1 and 0.2: the first one is for 0.3
        assert decode_report(next_frame(keeper)[1]).due == pytest.approx(0.3)
        keeper.send(0, 0, encode_advance(5, 0.30000000000000004, 0.35))
        assert decode_report(next_frame(keeper)[1]).due == pytest.approx(0.4)  # past 0.35
        keeper.send(0, 0, encode_advance(6, 0.4, 0.45))
        assert next_frame(keeper)[1][:1] == LEAVE
        keeper.send(0, 0, encode_end())
        thread.join(30)
        assert not thread.is_alive() and source.discarded >= 1
    finally:
        stop.set()
        thread.join(30)


def test_a_stop_ends_a_wait_the_keeper_never_answers(keeper):
    source, stop = FakeSource(), threading.Event()
    clock = FollowerClock(keeper.address, node=1)
    ended = threading.Event()

    def node_thread():
        clock.open()
        clock.attach(source)
        try:
            assert not clock.sleep_until(1.0, stop)
            ended.set()
        finally:
            clock.close()

    thread = threading.Thread(target=node_thread)
    thread.start()
    assert next_frame(keeper)[1][:1] == REPORT
    stop.set()
    thread.join(30)
    assert ended.is_set()
