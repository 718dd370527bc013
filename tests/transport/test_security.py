"""CURVE on the data sockets: with the run's key pair messages flow as usual; a socket without
it, or with another key, never gets a message delivered, and its handshakes are counted."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from transport import DilatedClock, LinkSpec, Message, ZmqTransport
from transport.security import CurveKeys, binds_off_loopback, secure_client
from transport.wire import encode

KINDS = frozenset({"model"})


def _link():
    return LinkSpec(up_mbps=1000.0, down_mbps=1000.0, latency_ms=1.0, paths={})


@pytest.mark.parametrize(
    "bind, off",
    [
        ("tcp://127.0.0.1", False),
        ("tcp://localhost", False),
        ("tcp://[::1]", False),
        ("ipc://", False),
        ("ipc:///tmp/dlemu-x", False),
        ("tcp://10.1.2.3", True),
        ("tcp://0.0.0.0", True),
        ("tcp://node7.cluster", True),
    ],
)
def test_only_an_address_other_hosts_can_reach_counts_as_off_loopback(bind, off):
    assert binds_off_loopback(bind) is off


def test_the_secret_never_shows_in_a_repr_and_each_run_gets_its_own_pair():
    keys = CurveKeys.generate()
    assert keys.secret not in repr(keys) and keys.public in repr(keys)
    assert len(keys.public) == len(keys.secret) == 40  # Z85 of 32 bytes
    assert CurveKeys.generate() != keys


def _intruder(ctx: zmq.Context, endpoint: str, keys: CurveKeys | None) -> zmq.Socket:
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        secure_client(push, keys)
    push.connect(endpoint)
    return push


@pytest.mark.process
def test_with_the_run_s_keys_messages_flow_and_without_them_nothing_is_delivered(zmq_context):
    keys = CurveKeys.generate()
    clock = DilatedClock(time.monotonic(), 1.0)
    stops = [threading.Event(), threading.Event()]
    rx = ZmqTransport(1, _link(), KINDS, stops[0], curve=keys)
    tx = ZmqTransport(0, _link(), KINDS, stops[1], curve=keys)
    intruders = []
    try:
        endpoint = rx.bind()
        tx.bind()
        tx.connect({1: endpoint})
        rx.connect({0: "tcp://127.0.0.1:1"})  # never sent to: a peer it accepts from
        for transport in (rx, tx):
            transport.start(clock)
        # A plain socket, one with a key pair of its own that knows the node's public key,
        # and one with another server key: each sends a message that is well-formed and
        # claims to come from node 0.
        forged = encode(Message("model", 0, 1, 7, 0, (np.zeros(3, np.float32),)))
        other = CurveKeys.generate()
        for who in (None, CurveKeys(other.public, other.secret)):
            intruders.append(_intruder(zmq_context, endpoint, who))
        mixed = _intruder(zmq_context, endpoint, None)
        secure_client(mixed, other)
        mixed.curve_serverkey = keys.public.encode("ascii")  # knows the node's public key
        intruders.append(mixed)
        for push in intruders:
            push.send_multipart(forged, copy=True)
        tx.send([Message("model", 0, 1, 1, 0, (np.ones(3, np.float32),))])
        got = []
        deadline = time.monotonic() + 60.0  # a bound, not a wait: it ends once all is seen
        while time.monotonic() < deadline and (not got or rx.stats.refused_handshakes < 3):
            msg = rx.receive(until=clock.now() + 0.1)
            if msg is not None:
                got.append(msg)
    finally:
        for push in intruders:
            push.close(linger=0)
        tx.close()
        rx.close()
    assert [(m.src, m.round, m.buffers[0].tolist()) for m in got] == [(0, 1, [1.0, 1.0, 1.0])]
    assert rx.stats.refused_handshakes >= 3  # each intruder at least once (they retry)
    assert rx.stats.malformed_messages == 0  # refused at the handshake, never read
    assert rx.stats.totals()["handshakes_refused"] == rx.stats.refused_handshakes


@pytest.mark.process
def test_a_node_without_curve_cannot_reach_a_node_with_it():
    keys = CurveKeys.generate()
    clock = DilatedClock(time.monotonic(), 1.0)
    stops = [threading.Event(), threading.Event()]
    rx = ZmqTransport(1, _link(), KINDS, stops[0], curve=keys)
    tx = ZmqTransport(0, _link(), KINDS, stops[1])  # a run's node started without the keys
    try:
        endpoint = rx.bind()
        tx.bind()
        tx.connect({1: endpoint})
        rx.connect({0: "tcp://127.0.0.1:1"})
        for transport in (rx, tx):
            transport.start(clock)
        tx.send([Message("model", 0, 1, 1, 0, (np.ones(3, np.float32),))])
        deadline = time.monotonic() + 60.0  # a bound, not a wait: it ends once refused
        got = None
        while got is None and not rx.stats.refused_handshakes and time.monotonic() < deadline:
            got = rx.receive(until=clock.now() + 0.1)
    finally:
        tx.close()
        rx.close()
    assert got is None and rx.stats.refused_handshakes >= 1
