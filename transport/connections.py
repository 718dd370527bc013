"""A node's outbound connections: one PUSH socket per peer, all opened before the run while
they fit under a cap, else opened on first use and the least recently used closed beyond the
cap. A full mesh of N nodes costs every node a ZeroMQ pipe per peer at both ends (about 55 KiB
per pair, measured here), which at 500 nodes is more than the node itself; DivShare talks to
up to 60 peers a round."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from transport.stats import LinkStats

# A closed connection still delivers what it was handed for this long (wall ms): the least
# recently used one has long been idle, so this only covers a message just handed over.
CLOSE_LINGER_MS = 2_000
# Above DivShare's 60 peers a round: below 66 nodes every peer stays connected, as before.
DEFAULT_MAX_CONNECTIONS = 64


class Closable(Protocol):
    def close(self, linger: int | None = None) -> None: ...


S = TypeVar("S", bound=Closable)


class Connections(Generic[S]):
    """`get(peer)` is the socket to `peer`. `open_socket(endpoint, eager)` makes one; eager
    sockets are all opened at construction (every peer fits under `limit`), lazy ones on demand,
    where the least recently used is closed to stay at `limit`. Counted in `stats`."""

    def __init__(
        self,
        endpoints: dict[int, str],
        open_socket: Callable[[str, bool], S],
        limit: int,
        stats: LinkStats,
    ):
        if limit < 1:
            raise ValueError("a node needs at least one open connection")
        self.endpoints, self.open_socket, self.limit = endpoints, open_socket, limit
        self.stats = stats
        self.eager = len(endpoints) <= limit
        self._open: OrderedDict[int, S] = OrderedDict()
        if self.eager:
            for peer in endpoints:
                self._open[peer] = self._new(peer)

    def get(self, peer: int) -> S:
        sock = self._open.pop(peer, None)
        if sock is None:
            while len(self._open) >= self.limit:
                _, oldest = self._open.popitem(last=False)
                oldest.close(linger=CLOSE_LINGER_MS)
                self.stats.connections_closed += 1
            sock = self._new(peer)
        self._open[peer] = sock
        return sock

    def __len__(self) -> int:
        return len(self._open)

    def opened(self) -> list[int]:
        """The peers with a socket open now, least recently used first."""
        return list(self._open)

    def close(self) -> None:
        """At the end of the run: nothing left to deliver."""
        for sock in self._open.values():
            sock.close(linger=0)
        self._open.clear()

    def _new(self, peer: int) -> S:
        self.stats.connections_opened += 1
        return self.open_socket(self.endpoints[peer], self.eager)
