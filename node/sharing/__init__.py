"""Sharing codecs: what of a model a message carries (all of it, the top-k with error
feedback, a seeded random subset, or quantised values), for any algorithm that exchanges
models; chosen by `sharing=NAME` in the config."""

from __future__ import annotations

import random

from node.sharing.base import Codec, CodecError, Encoded, Part, SharingConfig, seed_from
from node.sharing.full import Full
from node.sharing.merge import mean_of_parts, weighted_mix
from node.sharing.quantize import Quantize
from node.sharing.subsample import RandomSubset
from node.sharing.topk import TopK

CODECS: dict[str, type[Codec]] = {
    "full": Full,
    "topk": TopK,
    "random": RandomSubset,
    "quantize": Quantize,
}
FULL = SharingConfig(name="full")


def make_codec(config: SharingConfig, size: int, rng: random.Random) -> Codec:
    """The codec `config` names for vectors of `size` values; a randomized one seeds its own
    generator from `rng` (the node's), so that a run repeats bit for bit."""
    cls = CODECS[config.name]
    return cls(config, size, seed_from(rng) if cls.randomized else 0)


__all__ = [
    "CODECS",
    "FULL",
    "Codec",
    "CodecError",
    "Encoded",
    "Part",
    "SharingConfig",
    "make_codec",
    "mean_of_parts",
    "weighted_mix",
]
