"""What both ZeroMQ transports (zmq_transport.py on dilated wall time, zmq_virtual.py in virtual
time) are made with and keep alike: the node and its link, the message kinds it speaks, where it
listens, its limits, the scenario's reachability, the run's CURVE keys and the byte counters."""

from __future__ import annotations

import threading
from collections import deque

import zmq

from transport.clock import Clock
from transport.connections import DEFAULT_MAX_CONNECTIONS
from transport.dynamics import Reachability
from transport.link import LinkSpec
from transport.security import CurveKeys
from transport.stats import LinkStats
from transport.wire import DEFAULT_MAX_MESSAGE_BYTES, Message, check_kinds


class ZmqEndpoint:
    """The settings and state both transports share; each adds its own in its `__init__`."""

    def __init__(
        self,
        node_id: int,
        link: LinkSpec,
        kinds: frozenset[str],
        stop: threading.Event,
        bind_address: str = "tcp://127.0.0.1:0",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        reach: Reachability | None = None,
        curve: CurveKeys | None = None,
    ):
        self.node_id, self.link, self.stop = node_id, link, stop
        self.kinds = check_kinds(kinds)
        self.bind_address, self.max_message_bytes = bind_address, max_message_bytes
        self.max_connections = max_connections
        self.reach = reach or Reachability()  # a scenario's who-reaches-whom
        self.curve = curve  # the run's key pair: every data socket speaks CURVE with it
        self.authenticator = None
        self.stats = LinkStats()
        self.ctx: zmq.Context | None = None
        self.clock: Clock | None = None
        self.peers: dict[int, str] = {}
        self.ready: deque[Message] = deque()  # released, not yet received
