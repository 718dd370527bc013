"""Moves bytes between node processes and emulates their links; knows nothing of torch.

A node uses one transport object: `ZmqTransport` between processes on dilated wall time,
`VirtualZmqTransport` between processes in virtual time, or their in-memory twin
`MemoryNetwork(...).transport(...)` on a `VirtualClock` in tests; all are a `Transport`.
Emulated time (transport/clock/): a `DilatedClock`, or the launcher's virtual clock through a
`FollowerClock`, or the twin's `VirtualClock`; all are a `Clock`."""

from transport.clock import Clock, DilatedClock, FollowerClock, KeeperAddress, VirtualClock
from transport.dynamics import Action, Reachability
from transport.gate import Gate, GateClient, GateQueue, GateServer, NoGate
from transport.link import LinkSpec, Transport
from transport.memory import MemoryNetwork, MemoryTransport
from transport.schedule import DownlinkQueue, PackedBatch, Uplink
from transport.shaper import Downlink, Egress, TokenBucket
from transport.stats import LinkStats
from transport.wire import (
    FLUSH,
    Message,
    WireError,
    check_kinds,
    decode,
    encode,
    pack,
    stamp,
    wire_size,
)
from transport.zmq_transport import ZmqTransport
from transport.zmq_virtual import VirtualZmqTransport

__all__ = [
    "FLUSH",
    "Action",
    "Reachability",
    "Clock",
    "Gate",
    "GateClient",
    "GateQueue",
    "GateServer",
    "NoGate",
    "Downlink",
    "DownlinkQueue",
    "Egress",
    "DilatedClock",
    "FollowerClock",
    "KeeperAddress",
    "LinkSpec",
    "LinkStats",
    "MemoryNetwork",
    "MemoryTransport",
    "Message",
    "PackedBatch",
    "TokenBucket",
    "Transport",
    "Uplink",
    "VirtualClock",
    "VirtualZmqTransport",
    "WireError",
    "ZmqTransport",
    "check_kinds",
    "decode",
    "encode",
    "pack",
    "stamp",
    "wire_size",
]
