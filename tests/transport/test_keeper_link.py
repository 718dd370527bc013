"""The frames between the launcher's time keeper and a node's follower clock: what is encoded is
what is decoded, anything else is refused, and the keeper's socket counts strangers."""

from __future__ import annotations

import math

import pytest
import zmq

from transport.clock.keeper_link import (
    ADVANCE,
    SYNC,
    KeeperSocket,
    LinkError,
    decode_keeper,
    decode_report,
    encode_advance,
    encode_report,
    encode_sync,
    follower_name,
    parse_name,
)


def test_a_report_says_until_when_what_was_admitted_and_what_was_handed_over():
    report = decode_report(encode_report(7, 1.25, 42, {3: 2, 59: 1}, quiet=1.5))
    assert (report.gen, report.due, report.quiet) == (7, 1.25, 1.5)
    assert (report.admitted, report.sent) == (42, {3: 2, 59: 1})
    assert decode_report(encode_report(0, math.inf, 0, {})).quiet == -math.inf


def test_the_keeper_says_advance_or_sync():
    assert decode_keeper(encode_advance(12, 0.5, 0.75, 1)) == (ADVANCE, (12, 0.5, 0.75, 1))
    assert decode_keeper(encode_sync(99)) == (SYNC, (99,))


@pytest.mark.parametrize(
    "frame", [b"", b"R", b"R" + bytes(33), encode_report(1, math.nan, 0, {}), b"X" + bytes(24)]
)
def test_anything_else_is_refused(frame):
    with pytest.raises(LinkError):
        decode_report(frame) if frame[:1] == b"R" else decode_keeper(frame)


def test_a_follower_is_named_by_node_and_incarnation():
    assert parse_name(follower_name(12, 3)) == (12, 3)
    assert parse_name(b"n12") is None and parse_name(b"\xff") is None


def test_the_keepers_socket_takes_reports_and_counts_strangers():
    keeper = KeeperSocket()
    ctx = zmq.Context()
    try:
        follower = ctx.socket(zmq.DEALER)
        follower.identity = follower_name(4, 1)
        stranger = ctx.socket(zmq.DEALER)
        stranger.identity = b"intruder"
        for sock in (follower, stranger):
            sock.linger = 0
            sock.connect(keeper.address.endpoint)
        follower.send(encode_report(0, 2.0, 0, {}))
        stranger.send(encode_report(0, 2.0, 0, {}))
        got = []
        while len(got) + keeper.strangers < 2 and keeper.poll(5000):
            got += keeper.receive()
        assert [(node, inc, kind) for node, inc, kind, _ in got] == [(4, 1, b"R")]
        assert keeper.strangers == 1
        assert keeper.send(4, 1, encode_advance(1, 0.0))
        assert follower.poll(5000) and decode_keeper(follower.recv()) == (
            ADVANCE,
            (1, 0.0, -math.inf, -1),
        )
        assert not keeper.send(5, 0, encode_advance(1, 0.0))  # nobody of that name
    finally:
        ctx.destroy(linger=0)
        keeper.close()
