"""The wire codec: round trips, and every kind of bad input is refused with WireError."""

import os
import pickle

import msgpack
import numpy as np
import pytest

from transport.wire import (
    FLUSH,
    WIRE_VERSION,
    Message,
    WireError,
    check_kinds,
    decode,
    encode,
    pack,
    stamp,
    wire_size,
)

KINDS = frozenset({"fragment"})


def _message(**kw):
    base = dict(
        kind="fragment",
        src=3,
        dst=7,
        round=12,
        frag=4,
        buffers=(np.arange(6, dtype=np.float32).reshape(2, 3),),
        aux={"ping": True},
        t_start=1.25,
        t_end=1.5,
    )
    base.update(kw)
    return Message(**base)


def _frames(msg):
    return [bytes(f) for f in encode(msg)]


def _header(frames):
    return msgpack.unpackb(frames[0], raw=False)


def _with_header(frames, **changes):
    header = _header(frames)
    header.update(changes)
    return [msgpack.packb(header, use_bin_type=True), *frames[1:]]


def test_round_trip_keeps_every_field_and_value():
    msg = _message()
    out = decode(_frames(msg), KINDS)
    assert (out.kind, out.src, out.dst, out.round, out.frag) == ("fragment", 3, 7, 12, 4)
    assert out.aux == {"ping": True} and (out.t_start, out.t_end) == (1.25, 1.5)
    np.testing.assert_array_equal(out.buffers[0], msg.buffers[0])
    assert out.buffers[0].dtype == np.float32


def test_wire_size_is_header_plus_payload_and_independent_of_stamps():
    msg = _message()
    frames = _frames(msg)
    assert wire_size(msg) == sum(len(f) for f in frames)
    assert wire_size(_message(t_start=123456.789, t_end=0.0)) == wire_size(msg)


def test_pickle_payload_is_rejected():
    evil = pickle.dumps({"params": np.zeros(3), "CHANNEL": "model"})
    with pytest.raises(WireError):
        decode([evil], KINDS)
    with pytest.raises(WireError):  # pickle smuggled as a buffer frame with a header lying
        decode(_with_header(_frames(_message()), bufs=[["object", [1], 8]])[:1] + [evil], KINDS)


@pytest.mark.parametrize("seed", range(50))
def test_random_garbage_is_rejected(seed):
    rng = np.random.default_rng(seed)
    frames = [rng.bytes(int(rng.integers(0, 300))) for _ in range(int(rng.integers(1, 4)))]
    with pytest.raises(WireError):
        decode(frames, KINDS)


def test_truncated_header_and_payload_are_rejected():
    frames = _frames(_message())
    with pytest.raises(WireError):
        decode([frames[0][:-3], frames[1]], KINDS)
    with pytest.raises(WireError):
        decode([frames[0], frames[1][:-4]], KINDS)


@pytest.mark.parametrize(
    "changes",
    [
        {"v": WIRE_VERSION + 1},
        {"kind": "exec"},
        {"src": -1},
        {"dst": "7"},
        {"round": 1.5},
        {"t_start": float("nan")},
        {"aux": {"x": [1, 2]}},
        {"bufs": [["float32", [2, 3], 99]]},
        {"bufs": [["float32", [3, 3], 36]]},
        {"bufs": [["object", [2, 3], 24]]},
        {"bufs": []},
        {"extra": 1},
    ],
)
def test_header_that_does_not_fit_the_schema_is_rejected(changes):
    with pytest.raises(WireError):
        decode(_with_header(_frames(_message()), **changes), KINDS)


def test_missing_key_is_rejected():
    frames = _frames(_message())
    header = _header(frames)
    del header["frag"]
    with pytest.raises(WireError):
        decode([msgpack.packb(header), frames[1]], KINDS)


def test_oversized_message_is_rejected():
    msg = _message(buffers=(np.zeros(1000, dtype=np.float32),))
    with pytest.raises(WireError, match="larger"):
        decode(_frames(msg), KINDS, max_message_bytes=1000)


def test_encode_refuses_object_arrays():
    with pytest.raises(WireError):
        encode(_message(buffers=(np.array([os, 1], dtype=object),)))


def test_a_node_accepts_only_the_kinds_it_declared():
    with pytest.raises(WireError, match="not one this node accepts"):
        decode(_frames(_message(kind="model")), KINDS)
    assert decode(_frames(_message(kind="model")), KINDS | {"model"}).kind == "model"


@pytest.mark.parametrize("kind", ["", "Model", "has space", "x" * 33, FLUSH, 3])
def test_declared_kinds_are_short_lower_case_names_and_not_the_reserved_one(kind):
    with pytest.raises(WireError):
        check_kinds({kind})
    assert check_kinds({"my_kind2"}) == {"my_kind2"}


def test_a_message_is_packed_once_and_stamped_in_place():
    msg = _message(t_start=0.0, t_end=0.0)
    packed = pack(msg)
    header_before = bytes(packed.header)
    frames = stamp(packed, 3.5, 4.25)
    assert frames[0] is packed.header and len(frames[0]) == len(header_before)
    out = decode([bytes(f) for f in frames], KINDS)
    assert (out.t_start, out.t_end) == (3.5, 4.25)
    assert packed.size == wire_size(msg) == sum(memoryview(f).nbytes for f in frames)
    # Only the times changed.
    expected = {**_header([header_before]), "t_start": 3.5, "t_end": 4.25}
    assert _header([bytes(frames[0])]) == expected
