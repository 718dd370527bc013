"""What the launcher's time keeper and a node's follower clock say to each other, and the
keeper's socket. One ROUTER at the launcher; one DEALER per node process, owned by its training
thread and named `t<node>.<incarnation>` (a node started again after a crash is a new
incarnation). Frames are a kind byte and fixed-size big-endian fields: the keeper reads one
report per node at every instant a node acts, so they cost a struct unpack, not a msgpack map.

    node -> keeper   REPORT  gen, due, quiet, admitted, then (dst, count) pairs: "I wait until
                     `due` (inf: for ever); I send nothing before `quiet` (my next round end,
                     or a delivery); I have admitted `admitted` messages in all; since my last
                     report I handed these over"
                     LEAVE   "my run is over"
    keeper -> node   ADVANCE gen, t: "emulated time is `t`; act on what is due" (gen counts them)
                     SYNC    n: "report again once you have admitted `n` messages in all"
                     END     "every node has left: the run is over" (until then a node that
                             left keeps reading its socket, as a finished twin node does)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import zmq

from transport.security import CurveKeys, launcher_router, secure_client

REPORT, LEAVE, ADVANCE, SYNC, END = b"R", b"L", b"V", b"S", b"E"
_REPORT = struct.Struct(">QddQ")  # gen seen, due, quiet until, admitted in all
_PAIR = struct.Struct(">II")  # destination, messages handed over to it since the last report
_ADVANCE = struct.Struct(">Qddh")  # gen, emulated t, horizon, the slot it computes in (-1: any)
_SYNC = struct.Struct(">Q")
# The order stamp every message carries in virtual time, after its header in the header frame:
# the phase (gen) it was handed over in and the sender's count. Messages reach a receiver's
# downlink in the order of their stamps, whatever the sockets did, as the twin delivers them.
ORDER = struct.Struct(">QQ")


class LinkError(ValueError):
    """A frame that is not one of the keeper link's."""


@dataclass(frozen=True)
class KeeperAddress:
    """Where a node finds the launcher's time keeper (and the run's keys, with CURVE on)."""

    endpoint: str
    curve: CurveKeys | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Report:
    gen: int
    due: float
    quiet: float
    admitted: int
    sent: dict[int, int]


def encode_report(
    gen: int, due: float, admitted: int, sent: dict[int, int], quiet: float = -math.inf
) -> bytes:
    pairs = b"".join(_PAIR.pack(dst, count) for dst, count in sent.items())
    return REPORT + _REPORT.pack(gen, due, quiet, admitted) + pairs


def decode_report(frame: bytes) -> Report:
    body = memoryview(frame)[1:]
    if len(body) < _REPORT.size or (len(body) - _REPORT.size) % _PAIR.size:
        raise LinkError(f"a report of {len(frame)} bytes")
    gen, due, quiet, admitted = _REPORT.unpack_from(body)
    if math.isnan(due) or math.isnan(quiet):
        raise LinkError("a report with no instant")
    sent = {dst: count for dst, count in _PAIR.iter_unpack(body[_REPORT.size :])}
    return Report(gen, due, quiet, admitted, sent)


def encode_advance(gen: int, t: float, horizon: float = -math.inf, slot: int = -1) -> bytes:
    return ADVANCE + _ADVANCE.pack(gen, t, horizon, slot)


def encode_sync(admitted: int) -> bytes:
    return SYNC + _SYNC.pack(admitted)


def encode_end() -> bytes:
    return END


def decode_keeper(frame: bytes) -> tuple[bytes, tuple]:
    """(ADVANCE, (gen, t, horizon, slot)), (SYNC, (admitted,)) or (END, ()) from the keeper."""
    kind, body = frame[:1], frame[1:]
    if kind == ADVANCE and len(body) == _ADVANCE.size:
        return kind, _ADVANCE.unpack(body)
    if kind == SYNC and len(body) == _SYNC.size:
        return kind, _SYNC.unpack(body)
    if kind == END and not body:
        return kind, ()
    raise LinkError(f"not a keeper frame: {bytes(frame[:16])!r}")


def follower_name(node: int, incarnation: int) -> bytes:
    return f"t{node}.{incarnation}".encode()


def parse_name(name: bytes) -> tuple[int, int] | None:
    """(node, incarnation) of a follower's socket name, or None."""
    try:
        node, incarnation = name.decode("ascii").removeprefix("t").split(".")
        return int(node), int(incarnation)
    except (UnicodeDecodeError, ValueError):
        return None


def follower_socket(ctx: zmq.Context, name: bytes, address: KeeperAddress) -> zmq.Socket:
    """A follower's DEALER, connected to the keeper (create and use it in one thread)."""
    sock = ctx.socket(zmq.DEALER)
    sock.identity = name
    sock.linger = 1000  # a LEAVE still goes out when the node closes right after it
    if address.curve is not None:
        secure_client(sock, address.curve)
    sock.connect(address.endpoint)
    return sock


class KeeperSocket:
    """The keeper's ROUTER, owned by the keeper's thread: `receive` every frame waiting (as
    (node, incarnation, kind, body); strangers' and malformed frames are counted, never
    raised), `send` to a follower (False if it is gone)."""

    def __init__(self, host: str = "127.0.0.1", curve: CurveKeys | None = None):
        self.ctx, self.authenticator, self.sock = launcher_router(curve)
        port = self.sock.bind_to_random_port(f"tcp://{host}")
        self.address = KeeperAddress(f"tcp://{host}:{port}", curve)
        self.strangers = 0

    def poll(self, timeout_ms: int) -> bool:
        return bool(self.sock.poll(timeout_ms))

    def receive(self) -> list[tuple[int, int, bytes, bytes]]:
        got = []
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return got
            who = parse_name(frames[0]) if len(frames) == 2 else None
            if who is None or frames[1][:1] not in (REPORT, LEAVE):
                self.strangers += 1
                continue
            got.append((*who, frames[1][:1], frames[1]))

    def send(self, node: int, incarnation: int, frame: bytes) -> bool:
        try:
            self.sock.send_multipart([follower_name(node, incarnation), frame], zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # not connected: the process is gone
            return False

    def close(self) -> None:
        self.sock.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.ctx.term()
