"""Outbound connections: all open while they fit under the cap, else opened on first use and
the least recently used closed (with time to deliver what it holds)."""

import pytest

from transport.connections import CLOSE_LINGER_MS, Connections
from transport.stats import LinkStats


class FakeSocket:
    def __init__(self, endpoint, eager):
        self.endpoint, self.eager, self.linger = endpoint, eager, None

    def close(self, linger=None):
        self.linger = linger


def endpoints(n):
    return {peer: f"ipc:///run/{peer}" for peer in range(1, n + 1)}


def test_peers_under_the_cap_are_all_connected_before_the_run_and_never_closed():
    connections = Connections(endpoints(3), FakeSocket, 3, LinkStats())
    first = {peer: connections.get(peer) for peer in (3, 1, 2, 3)}
    assert connections.eager and connections.stats.connections_opened == 3
    assert connections.stats.connections_closed == 0
    assert all(sock.eager and sock.linger is None for sock in first.values())


def test_beyond_the_cap_the_least_recently_used_connection_closes_and_lingers():
    connections = Connections(endpoints(4), FakeSocket, 2, LinkStats())
    assert not connections.eager and len(connections) == 0
    one, two = connections.get(1), connections.get(2)
    assert connections.get(1) is one  # 2 is now the least recently used
    three = connections.get(3)
    assert two.linger == CLOSE_LINGER_MS and one.linger is None and len(connections) == 2
    assert connections.get(2) is not two and one.linger == CLOSE_LINGER_MS  # 1 was oldest
    assert three.endpoint == "ipc:///run/3" and not three.eager
    assert (connections.stats.connections_opened, connections.stats.connections_closed) == (4, 2)
    connections.close()
    assert three.linger == 0 and len(connections) == 0


def test_a_node_needs_an_open_connection():
    with pytest.raises(ValueError, match="at least one"):
        Connections(endpoints(2), FakeSocket, 0, LinkStats())
