"""Wire format: one msgpack header frame followed by raw buffer frames; validated, never pickled."""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field

import msgpack
import numpy as np

WIRE_VERSION = 1
# Transport control: "the sender flushed at t_start", so the receiver drops what of that
# sender's traffic it had not fully delivered by then (see DownlinkQueue). Carries no data.
FLUSH = "flush"
# Algorithms name the kinds they send; a receiver accepts only those its algorithm declared.
KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
DTYPES = frozenset({"float16", "float32", "float64", "int32", "int64", "uint8"})
HEADER_KEYS = frozenset(
    {"v", "kind", "src", "dst", "round", "frag", "t_start", "t_end", "aux", "bufs"}
)
MAX_HEADER_BYTES = 16 * 1024
MAX_BUFFERS = 16
MAX_AUX_ITEMS = 16
MAX_NDIM = 4
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# The header ends with "t_start": float64, "t_end": float64, so that the sender can stamp
# both in place, at fixed offsets from the end, without packing the header again.
_TIMES_TAIL = struct.Struct(">B7sBdB5sBd")
_TIMES_KEYS = (0xA7, b"t_start", 0xCB, 0xA5, b"t_end", 0xCB)


class WireError(ValueError):
    """A message that does not fit the wire format; the receiver drops and counts it."""


@dataclass(frozen=True, slots=True)
class Message:
    """One logical message. `t_start`/`t_end` are emulated times stamped by the sender's uplink."""

    kind: str
    src: int
    dst: int
    round: int
    frag: int = 0
    buffers: tuple[np.ndarray, ...] = ()
    aux: dict[str, int | float | bool] = field(default_factory=dict)
    t_start: float = 0.0
    t_end: float = 0.0
    delivered_at: float = 0.0  # set by the receiver's downlink; never on the wire

    @property
    def payload_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers)


@dataclass(frozen=True, slots=True)
class Packed:
    """A message encoded once: its header (times stamped in place at hand-over) and its
    buffers as frames, and its size on an emulated link (header plus payload)."""

    dst: int
    size: int
    header: bytearray
    buffers: tuple[memoryview, ...]

    @property
    def value_bytes(self) -> int:
        """The payload values: the first buffer. Later buffers describe them (a codec's
        indices or scales): metadata, as the header is."""
        return self.buffers[0].nbytes if self.buffers else 0


def check_kinds(kinds: frozenset[str] | set[str]) -> frozenset[str]:
    """The message kinds an algorithm declares: short lower-case names, not the reserved one."""
    for kind in kinds:
        if not isinstance(kind, str) or not KIND_PATTERN.fullmatch(kind) or kind == FLUSH:
            raise WireError(
                f"message kind {kind!r} is not allowed: use 1-32 characters of a-z, 0-9 and _, "
                f"starting with a letter, and not {FLUSH!r} (reserved for the transport)"
            )
    return frozenset(kinds)


def _header(msg: Message) -> dict:
    return {
        "v": WIRE_VERSION,
        "kind": msg.kind,
        "src": msg.src,
        "dst": msg.dst,
        "round": msg.round,
        "frag": msg.frag,
        "aux": dict(msg.aux),
        "bufs": [[b.dtype.name, list(b.shape), b.nbytes] for b in msg.buffers],
        # Always floats, and last: see _TIMES_TAIL.
        "t_start": float(msg.t_start),
        "t_end": float(msg.t_end),
    }


def pack(msg: Message) -> Packed:
    """Encode once: the header with the message's own times, the buffers without copying."""
    header = bytearray(msgpack.packb(_header(msg), use_bin_type=True))
    tail = _TIMES_TAIL.unpack_from(header, len(header) - _TIMES_TAIL.size)
    if tail[:3] + tail[4:7] != _TIMES_KEYS:  # a msgpack or dict-order change would break stamp()
        raise RuntimeError("header layout changed: the times are not last")
    buffers = []
    for buf in msg.buffers:
        if buf.dtype.name not in DTYPES:
            raise WireError(f"dtype {buf.dtype.name} not allowed")
        buffers.append(memoryview(np.ascontiguousarray(buf)).cast("B"))
    size = len(header) + sum(b.nbytes for b in buffers)
    return Packed(msg.dst, size, header, tuple(buffers))


def stamp(packed: Packed, t_start: float, t_end: float) -> list[bytearray | memoryview]:
    """Frames for `send_multipart(copy=False)`, the header's times set in place. Each packed
    message is stamped once, just before it is handed over, and never touched again."""
    end = len(packed.header)
    struct.pack_into(">d", packed.header, end - 23, t_start)
    struct.pack_into(">d", packed.header, end - 8, t_end)
    return [packed.header, *packed.buffers]


def encode(msg: Message) -> list[bytearray | memoryview]:
    """Frames of `msg` with its own times."""
    return stamp(pack(msg), msg.t_start, msg.t_end)


def wire_size(msg: Message) -> int:
    """Bytes this message occupies on an emulated link: header plus payload."""
    return pack(msg).size


def _int(header: dict, key: str, low: int = -1) -> int:
    value = header[key]
    if type(value) is not int or value < low:
        raise WireError(f"header field {key!r} must be an int >= {low}")
    return value


def _time(header: dict, key: str) -> float:
    value = header[key]
    if type(value) is not float or not math.isfinite(value):
        raise WireError(f"header field {key!r} must be a finite float")
    return value


def decode(
    frames: list, kinds: frozenset[str], max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Message:
    """Validate and rebuild a message of one of `kinds`; raises WireError on anything that
    does not fit exactly."""
    if not frames or len(frames) > MAX_BUFFERS + 1:
        raise WireError(f"expected 1..{MAX_BUFFERS + 1} frames, got {len(frames)}")
    raw = [memoryview(f.buffer if hasattr(f, "buffer") else f) for f in frames]
    if sum(r.nbytes for r in raw) > max_message_bytes:
        raise WireError(f"message larger than {max_message_bytes} bytes")
    if raw[0].nbytes > MAX_HEADER_BYTES:
        raise WireError("header too large")
    try:
        header = msgpack.unpackb(raw[0], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise WireError(f"header is not msgpack: {exc}") from None
    if not isinstance(header, dict) or set(header) != HEADER_KEYS:
        raise WireError("header keys do not match the schema")
    if header["v"] != WIRE_VERSION:
        raise WireError(f"wire version {header['v']!r}, expected {WIRE_VERSION}")
    if header["kind"] not in kinds:
        raise WireError(f"kind {header['kind']!r} is not one this node accepts")
    aux = header["aux"]
    if not isinstance(aux, dict) or len(aux) > MAX_AUX_ITEMS:
        raise WireError("aux must be a small map")
    for key, value in aux.items():
        if not isinstance(key, str) or type(value) not in (int, float, bool):
            raise WireError("aux holds only str -> int/float/bool")
    specs = header["bufs"]
    if not isinstance(specs, list) or len(specs) != len(raw) - 1:
        raise WireError("buffer descriptions do not match the frames")
    buffers = []
    for spec, frame in zip(specs, raw[1:], strict=True):
        buffers.append(_buffer(spec, frame))
    return Message(
        kind=header["kind"],
        src=_int(header, "src", 0),
        dst=_int(header, "dst", 0),
        round=_int(header, "round", -1),
        frag=_int(header, "frag", 0),
        buffers=tuple(buffers),
        aux=aux,
        t_start=_time(header, "t_start"),
        t_end=_time(header, "t_end"),
    )


def _buffer(spec: object, frame: memoryview) -> np.ndarray:
    if not isinstance(spec, list) or len(spec) != 3:
        raise WireError("buffer description must be [dtype, shape, nbytes]")
    dtype_name, shape, nbytes = spec
    if dtype_name not in DTYPES:
        raise WireError(f"dtype {dtype_name!r} not allowed")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or any(type(d) is not int or d < 0 for d in shape)
    ):
        raise WireError("bad shape")
    dtype = np.dtype(dtype_name)
    if type(nbytes) is not int or nbytes != math.prod(shape) * dtype.itemsize:
        raise WireError("nbytes does not match dtype and shape")
    if frame.nbytes != nbytes:
        raise WireError(f"frame has {frame.nbytes} bytes, header says {nbytes}")
    return np.frombuffer(frame, dtype=dtype).reshape(shape)
