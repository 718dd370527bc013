"""The launcher's ZeroMQ control channel: messages both ways by identity, a process started again
under its name, the launcher's loss seen as a closed pipe, and CURVE keeping strangers out."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from node import control
from transport.control_channel import ControlAddress, ControlClient, ControlServer
from transport.security import CurveKeys

TIMEOUT = 10.0


@pytest.fixture
def server():
    server = ControlServer()
    yield server
    server.close()


@pytest.fixture
def clients():
    opened: list[ControlClient] = []

    def open_client(address: ControlAddress) -> ControlClient:
        opened.append(ControlClient(address))
        return opened[-1]

    yield open_client
    for client in opened:
        client.close()


def test_messages_reach_each_process_by_name_both_ways(server, clients):
    channels = {n: server.channel(f"n{n}") for n in range(3)}
    ends = {n: clients(server.address(f"n{n}")) for n in range(3)}
    for n, end in ends.items():
        control.send(end, control.Ready(n, f"tcp://127.0.0.1:{5000 + n}"))
    for n, channel in channels.items():
        assert control.receive(channel, TIMEOUT) == control.Ready(n, f"tcp://127.0.0.1:{5000 + n}")
    for n, channel in channels.items():
        control.send(channel, control.ClockOffset(float(n)))
    for n, end in ends.items():
        assert control.receive(end, TIMEOUT) == control.ClockOffset(float(n))
    assert not any(channel.poll(0) for channel in channels.values())


def test_wait_returns_only_the_channels_with_a_message(server, clients):
    channels = [server.channel(f"n{n}") for n in range(3)]
    ends = [clients(server.address(f"n{n}")) for n in range(3)]
    control.send(ends[1], control.Connected(1))
    assert server.wait(channels, TIMEOUT) == [channels[1]]
    assert server.wait(channels, 0.05) == [channels[1]]  # still unread
    channels[1].recv_bytes()
    started = time.monotonic()
    assert server.wait(channels, 0.2) == []
    assert time.monotonic() - started >= 0.19


def test_a_frame_from_a_name_never_opened_is_dropped_and_counted(server, clients):
    known = server.channel("n0")
    stranger = clients(server.address("n9"))
    control.send(stranger, control.Connected(9))
    control.send(clients(server.address("n0")), control.Connected(0))
    assert control.receive(known, TIMEOUT) == control.Connected(0)
    deadline = time.monotonic() + TIMEOUT
    while server.unknown == 0 and time.monotonic() < deadline:
        server.pump(0.05)
    assert server.unknown == 1
    assert not known.poll(0)


def test_a_send_to_a_process_that_is_not_connected_is_a_broken_pipe(server):
    channel = server.channel("n0")
    with pytest.raises(BrokenPipeError, match="n0"):
        control.send(channel, control.Stop())


def test_a_new_process_under_the_same_name_takes_the_channel_over(server, clients):
    first = server.channel("n3")
    old = clients(server.address("n3"))
    control.send(old, control.Progress(3, 1.0, 1))
    assert first.poll(TIMEOUT)  # it has arrived at the launcher, unread
    old.close()
    channel = server.channel("n3")  # the launcher's fresh view: the old process's is gone
    assert not channel.poll(0)
    new = clients(server.address("n3"))
    control.send(new, control.Ready(3, "tcp://127.0.0.1:5003"))
    assert control.receive(channel, TIMEOUT) == control.Ready(3, "tcp://127.0.0.1:5003")
    control.send(channel, control.Stop())
    assert control.receive(new, TIMEOUT) == control.Stop()


def test_sends_from_two_threads_all_arrive_whole(server, clients):
    channel = server.channel("n0")
    end = clients(server.address("n0"))

    def send(first: int) -> None:
        for r in range(first, first + 200):
            control.send(end, control.Progress(0, float(r), r))

    threads = [threading.Thread(target=send, args=(k * 1000,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    rounds = [control.receive(channel, TIMEOUT).round for _ in range(400)]
    assert sorted(rounds) == list(range(200)) + list(range(1000, 1200))
    assert [r for r in rounds if r < 1000] == list(range(200))  # each thread's own order kept


def test_the_launcher_gone_reads_as_a_closed_pipe_and_refuses_sends():
    server = ControlServer()
    channel = server.channel("n0")
    end = ControlClient(server.address("n0"))
    try:
        control.send(end, control.Connected(0))
        assert control.receive(channel, TIMEOUT) == control.Connected(0)
        server.close()
        with pytest.raises(EOFError):
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                control.receive(end, 0.1)
        with pytest.raises(BrokenPipeError):
            control.send(end, control.Connected(0))
    finally:
        end.close()


def test_with_curve_only_a_process_holding_the_run_s_keys_gets_through(clients):
    keys = CurveKeys.generate()
    server = ControlServer(curve=keys)
    try:
        channel = server.channel("n0")
        intruders = [
            clients(ControlAddress(server.endpoint, "n0")),  # no CURVE at all
            clients(ControlAddress(server.endpoint, "n0", CurveKeys.generate())),  # other keys
        ]
        for intruder in intruders:  # refused at the handshake: its send fails, or goes nowhere
            with contextlib.suppress(BrokenPipeError):
                control.send(intruder, control.Failed(0, "injected"))
        assert not channel.poll(1.0)
        member = clients(server.address("n0"))
        control.send(member, control.Connected(0))
        assert control.receive(channel, TIMEOUT) == control.Connected(0)
        assert not channel.poll(0.2)  # nothing of the intruders' behind it
        deadline = time.monotonic() + TIMEOUT
        while server.counts()["handshakes_refused"] < 2 and time.monotonic() < deadline:
            server.pump(0.05)  # each intruder's handshake refused, and counted (each retry too)
        counts = server.counts()
        assert counts["handshakes_refused"] >= 2 and counts["frames_from_strangers"] == 0
    finally:
        server.close()
