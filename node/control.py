"""The control protocol between the launcher and its node and evaluator processes: typed
messages, msgpack on a channel (transport.control_channel: ZeroMQ, across hosts; a pipe does
too), in the order a run uses them.

Start-up: node -> Ready(endpoint); launcher -> Peers; node -> Connected; launcher -> ClockProbe /
node -> ClockReply (its clock), a few times, then launcher -> ClockOffset; then, for tdf=auto,
launcher -> Calibrate / node -> Calibrated (a burst of steps), and trials, as often as the
launcher asks: launcher -> TrialPrepare / node -> TrialReady(endpoint of a fresh transport),
launcher -> TrialStart / node -> TrialDone; then launcher -> Start. In virtual time there are no
clock probes and no trials: node 0 alone may be asked for a Calibrate burst (the bare step the
run's efficiency is judged against), then Start names the launcher's time keeper.
Run: node -> Progress (every few seconds), then Done or Failed; launcher -> Stop at any time.
Evaluators: -> Evaluated per snapshot tested; launcher -> Finish (test what is left) or Stop;
-> EvaluatorDone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Protocol

import msgpack


class Connection(Protocol):
    """What the protocol needs of its channel: a multiprocessing Connection's three calls."""

    def send_bytes(self, data: bytes) -> None: ...

    def poll(self, timeout: float) -> bool: ...

    def recv_bytes(self) -> bytes: ...


class ControlError(RuntimeError):
    """An unexpected or unreadable control message: the start-up cannot go on."""


@dataclass(frozen=True)
class Ready:
    node: int
    endpoint: str  # where the node's inbound socket is bound


@dataclass(frozen=True)
class Peers:
    peers: dict[int, str]  # node -> endpoint, every node's
    gate: str | None = None  # the host's compute gate, if any


@dataclass(frozen=True)
class Connected:
    node: int


@dataclass(frozen=True)
class ClockProbe:
    seq: int


@dataclass(frozen=True)
class ClockReply:
    node: int
    seq: int
    t: float  # the node's monotonic clock when it answered


@dataclass(frozen=True)
class ClockOffset:
    offset: float  # the node's clock minus the launcher's: added to every t0 the node gets


@dataclass(frozen=True)
class Calibrate:
    steps: int  # back to back, inside the compute gate


@dataclass(frozen=True)
class Calibrated:
    node: int
    cpu_per_step: float
    wall_per_step: float


@dataclass(frozen=True)
class TrialPrepare:
    pass


@dataclass(frozen=True)
class TrialReady:
    node: int
    endpoint: str  # of a transport of its own, for this trial only


@dataclass(frozen=True)
class TrialStart:
    peers: dict[int, str]  # every node's trial endpoint
    t0: float
    tdf: float
    rounds: int


@dataclass(frozen=True)
class TrialDone:
    node: int
    stats: dict  # see node.calibration.trial


@dataclass(frozen=True)
class Start:
    """Dilated wall time: `t0` and `tdf`. Virtual time: the keeper's endpoint, this process's
    incarnation (a node started again after a crash is the next one) and the keeper's time."""

    t0: float  # the shared wall instant (monotonic) of emulated time 0
    tdf: float
    keeper: str | None = None
    incarnation: int = 0
    t: float = 0.0
    gen: int = 0


@dataclass(frozen=True)
class Progress:
    node: int
    t: float  # the node's emulated time
    round: int
    stats: dict = field(default_factory=dict)  # behind_max and the link totals


@dataclass(frozen=True)
class Done:
    node: int
    stats: dict = field(default_factory=dict)  # the node's counters and link totals
    links: dict = field(default_factory=dict)  # per-peer byte counters
    thread_errors: list = field(default_factory=list)


@dataclass(frozen=True)
class Failed:
    node: int
    error: str  # the traceback


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Finish:
    pass


@dataclass(frozen=True)
class Departed:
    """The launcher saw `node` die unplanned at emulated `t`: the others count on it no more."""

    node: int
    t: float


@dataclass(frozen=True)
class Evaluated:
    node: int
    t: float
    metrics: dict  # accuracy, loss and whatever the task adds

    def record(self) -> dict:
        return {"node": self.node, "t": self.t, **self.metrics}


@dataclass(frozen=True)
class EvaluatorDone:
    worker: int


MESSAGES = {
    cls.__name__: cls
    for cls in (
        Ready,
        Peers,
        Connected,
        ClockProbe,
        ClockReply,
        ClockOffset,
        Calibrate,
        Calibrated,
        TrialPrepare,
        TrialReady,
        TrialStart,
        TrialDone,
        Start,
        Progress,
        Done,
        Failed,
        Stop,
        Finish,
        Departed,
        Evaluated,
        EvaluatorDone,
    )
}


def encode(message) -> bytes:
    return msgpack.packb({"type": type(message).__name__, **asdict(message)}, use_bin_type=True)


def decode(data: bytes):
    raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    cls = MESSAGES.get(raw.pop("type", None)) if isinstance(raw, dict) else None
    if cls is None or set(raw) != {f.name for f in fields(cls)}:
        raise ControlError(f"not a control message: {raw!r:.200}")
    return cls(**raw)


def send(conn: Connection, message) -> None:
    conn.send_bytes(encode(message))


def receive(conn: Connection, timeout: float):
    """The next message, or None after `timeout` seconds; EOFError if the other end is gone."""
    if not conn.poll(timeout):
        return None
    return decode(conn.recv_bytes())


def expect(conn: Connection, kinds: type | tuple[type, ...], timeout: float, node_id: int):
    """The launcher's next step of the start-up handshake, or a clear error."""
    message = receive(conn, timeout)
    if not isinstance(message, kinds):
        raise ControlError(f"node {node_id}: expected {kinds} from the launcher, got {message}")
    return message
