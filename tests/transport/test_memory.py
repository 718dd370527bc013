"""The in-memory twin: a virtual clock that moves only when every participant waits, and links
shaped by the same schedules as the ZeroMQ transport's."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from transport import LinkSpec, MemoryNetwork, Message, VirtualClock, wire_size
from transport.wire import encode

KINDS = frozenset({"fragment"})
MS = 1e-3


def participants(clock, *bodies, timeout=10.0):
    """Run each body in a thread as a participant of `clock`; re-raise the first error."""
    errors = []

    def wrap(body):
        try:
            body()
        except BaseException as exc:
            errors.append(exc)
        finally:
            clock.leave()

    threads = [threading.Thread(target=wrap, args=(b,), daemon=True) for b in bodies]
    for _ in threads:
        clock.join()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a participant hung"
    if errors:
        raise errors[0]


def test_time_moves_only_when_everyone_waits_and_then_straight_to_the_next_wake_up():
    clock, stop, woke = VirtualClock(), threading.Event(), []

    def first():
        clock.sleep_until(1.0, stop)
        woke.append(("first", clock.now()))
        threading.Event().wait(0.1)  # computing for a while: time must stand still meanwhile
        woke.append(("first computed", clock.now()))
        clock.sleep_until(2.5, stop)
        woke.append(("first again", clock.now()))

    def second():
        clock.sleep_until(1.5, stop)
        woke.append(("second", clock.now()))

    def third():
        clock.sleep_until(2.0, stop)
        woke.append(("third", clock.now()))

    participants(clock, first, second, third)
    assert woke == [
        ("first", 1.0),
        ("first computed", 1.0),
        ("second", 1.5),
        ("third", 2.0),
        ("first again", 2.5),
    ]


def test_a_stop_releases_a_sleeper():
    clock, stop = VirtualClock(), threading.Event()
    result = []

    def sleeper():
        result.append(clock.sleep_until(10.0, stop))

    def stopper():
        clock.sleep_until(1.0, stop)
        stop.set()

    participants(clock, sleeper, stopper)
    assert result == [False] and clock.now() == 1.0


def test_a_waiter_for_a_message_wakes_when_it_is_delivered():
    clock = VirtualClock()
    network = MemoryNetwork(clock)
    link = LinkSpec(up_mbps=8.0, down_mbps=80.0, latency_ms=1.0)  # 1 byte per µs up
    stops = [threading.Event(), threading.Event()]
    a, b = (network.transport(i, link, KINDS, stops[i]) for i in (0, 1))
    endpoints = {0: a.bind(), 1: b.bind()}
    a.connect(endpoints)
    b.connect(endpoints)
    a.start(clock)
    b.start(clock)
    msg = Message("fragment", 0, 1, 0, 0, (np.zeros(250, np.float32),))
    size = wire_size(msg)
    got = []

    def sender():
        clock.sleep_until(0.010, stops[0])
        a.send([msg])

    def receiver():
        got.append(b.receive(until=1.0))
        got.append(clock.now())

    participants(clock, sender, receiver)
    # Uplink: size µs from 10 ms; the downlink is 10x faster (cut-through), plus 1 ms latency.
    assert got[0].src == 0 and (got[0].t_start, got[0].t_end) == pytest.approx(
        (0.010, 0.010 + size * MS / 1000)
    )
    assert got[1] == pytest.approx(0.010 + size * MS / 1000 + 0.001)
    assert a.stats.sent_messages == 1 and b.stats.delivered_bytes == {0: size}


def test_receive_times_out_at_its_instant_and_everyone_waiting_for_ever_is_an_error():
    clock = VirtualClock()
    network = MemoryNetwork(clock)
    link = LinkSpec(up_mbps=8.0, down_mbps=8.0, latency_ms=0.0)
    rx = network.transport(1, link, KINDS, threading.Event())
    rx.bind()
    rx.connect({0: "memory://0"})
    got = []
    participants(clock, lambda: got.extend([rx.receive(until=0.25), clock.now()]))
    assert got == [None, 0.25]
    with pytest.raises(RuntimeError, match="waits for ever"):
        participants(clock, lambda: rx.receive(until=float("inf")))


def test_a_flush_cuts_what_waits_in_the_receivers_downlink_and_bad_input_is_counted():
    clock = VirtualClock()
    network = MemoryNetwork(clock)
    fast = LinkSpec(up_mbps=float("inf"), down_mbps=float("inf"), latency_ms=0.0)
    slow_down = LinkSpec(up_mbps=float("inf"), down_mbps=0.4, latency_ms=0.0)
    stop = threading.Event()
    a = network.transport(0, fast, KINDS, stop)
    b = network.transport(1, slow_down, KINDS, stop)
    endpoints = {0: a.bind(), 1: b.bind()}
    a.connect(endpoints)
    b.connect(endpoints)
    payload = np.zeros(2_500, np.float32)
    old = [Message("fragment", 0, 1, 0, i, (payload,)) for i in range(3)]
    new = [Message("fragment", 0, 1, 1, i, (payload,)) for i in range(2)]
    each = wire_size(old[0]) * 8 / 0.4e6
    got = []

    def sender():
        a.send(old)
        clock.sleep_until(each / 4, stop)
        a.send(new, replace=True)

    def receiver():
        while len(got) < 2:
            msg = b.receive(until=10.0)
            got.append((msg.round, clock.now()))

    participants(clock, sender, receiver)
    # All three had left the sender (counted sent); the receiver cut them; the new ones
    # follow each other from the flush on.
    assert a.stats.sent_messages == 5 and a.stats.dropped_messages == 0
    assert b.stats.flushed_messages == 3 and b.stats.delivered_messages == 2
    assert got == [(1, pytest.approx(each / 4 + each)), (1, pytest.approx(each / 4 + 2 * each))]
    # Input the receiver must not accept: undeclared kind, unknown sender, garbage.
    b.admit(encode(Message("ping", 0, 1, 0, 0, ())))
    b.admit(encode(Message("fragment", 5, 1, 0, 0, ())))
    b.admit([b"garbage"])
    assert b.stats.malformed_messages == 3
