"""What a sharing codec is: how a model (or a difference of models) becomes the arrays one
message carries, and back. Tensor logic only: codecs know neither the transport nor the
algorithms that use them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from node.checks import require


class CodecError(ValueError):
    """A received message this codec cannot read (wrong arrays, sizes, indices, seed)."""


@dataclass(frozen=True, kw_only=True)
class SharingConfig:
    """`name`: which codec (full, topk, random, quantize); each codec's class adds its own keys."""

    name: str = "full"


@dataclass(frozen=True)
class Encoded:
    """What one message carries: `values`, the payload (the message's first buffer), `extra`
    arrays that say where the values go or how to read them (indices, scales), and `aux`
    scalars for the header (a seed). Private copies: nobody mutates them again."""

    values: np.ndarray
    extra: tuple[np.ndarray, ...] = ()
    aux: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """A decoded message: `values` at the coordinates `indices` (None: every coordinate, in
    order: a whole vector)."""

    indices: torch.Tensor | None
    values: torch.Tensor

    @property
    def dense(self) -> bool:
        return self.indices is None


class Codec:
    """Compresses vectors of `size` float32 values. `compress` approximates any vector (CHOCO
    sends compressed differences through it); `share` is what a model-exchanging algorithm
    sends of its model each round (by default `compress(params)`; top-k keeps an error
    feedback there). `decompress` reads a received message back, or raises CodecError."""

    config_class: ClassVar[type[SharingConfig]] = SharingConfig
    randomized: ClassVar[bool] = False  # draws from its own generator, seeded by the node's RNG

    def __init__(self, config: SharingConfig, size: int, seed: int = 0):
        self.config, self.size = config, size
        self.rng = np.random.default_rng(seed)

    @property
    def full(self) -> bool:
        """Sends every coordinate exactly: today's whole-model messages."""
        return False

    def start(self, params: torch.Tensor) -> None:
        """The initial model, the same on every node, before the first `share`."""

    def compress(self, vector: torch.Tensor) -> Encoded:
        raise NotImplementedError

    def share(self, params: torch.Tensor) -> Encoded:
        return self.compress(params)

    def decompress(self, values: np.ndarray, extra: tuple, aux: dict) -> Part:
        raise NotImplementedError

    def message_bytes(self) -> tuple[int, int]:
        """(payload values, metadata) bytes of one message of this codec, headers aside."""
        raise NotImplementedError


def expect_array(array, dtype, length: int, what: str) -> np.ndarray:
    """`array` if it is a vector of `length` values of `dtype`, else CodecError."""
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != (length,):
        shape = getattr(array, "shape", None)
        got = f"{getattr(array, 'dtype', type(array).__name__)} {shape}"
        raise CodecError(f"{what}: expected {np.dtype(dtype).name} ({length},), got {got}")
    return array


def expect_extra(
    extra: tuple, aux: dict, arrays: tuple[str, ...] = (), keys: tuple[str, ...] = ()
) -> None:
    """A message carries, after its values, exactly the named `arrays`, and of the codecs'
    header fields (codec_*) only `keys`; else CodecError."""
    if len(extra) != len(arrays):
        sent = ", ".join(("values", *arrays))
        raise CodecError(f"expected {sent}: {1 + len(arrays)} arrays, got {1 + len(extra)}")
    unknown = [k for k in aux if k.startswith("codec_") and k not in keys]
    if unknown:
        raise CodecError(f"header fields {unknown} this codec does not send")


def count_of(fraction: float, size: int) -> int:
    """How many of `size` coordinates a fraction keeps: at least one."""
    return min(size, max(1, round(fraction * size)))


@dataclass(frozen=True, kw_only=True)
class FractionConfig(SharingConfig):
    """A codec that sends a fraction of the coordinates (top-k, random)."""

    fraction: float = 0.1  # of the coordinates sent per message

    def __post_init__(self) -> None:
        require(
            0 < self.fraction <= 1,
            "sharing.fraction",
            f"{self.fraction} is outside (0, 1]",
            "use e.g. 0.1 to send a tenth of the coordinates",
        )


def seed_from(rng: random.Random) -> int:
    return rng.getrandbits(63)
