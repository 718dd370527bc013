"""The reliability benchmark's fuzzer: every frame it makes is one a node must refuse."""

from __future__ import annotations

import random

from bench.reliability import KINDS, fuzz_frames
from transport import WireError, decode

NODE_KINDS = frozenset({"fragment", "model"})


def test_every_fuzzed_frame_is_refused_by_the_wire_decoder_and_every_kind_is_made():
    rng, made = random.Random(3), dict.fromkeys(KINDS, 0)
    for _ in range(3000):
        kind, frames = fuzz_frames(rng, target=0, max_bytes=1 << 16)
        made[kind] += 1
        try:
            msg = decode(frames, NODE_KINDS, 1 << 16)
        except WireError:
            continue
        # What decodes must still be refused by the receiver: a stranger, or not for node 0.
        assert msg.dst != 0 or msg.src not in (1, 2, 3), f"{kind} would be accepted"
    assert all(count > 0 for count in made.values())
