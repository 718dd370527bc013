"""`random`: a fraction of the coordinates drawn from a seed; the seed travels instead of the
indices (decentralizepy's SubSampling)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from node.sharing.base import (
    Codec,
    CodecError,
    Encoded,
    FractionConfig,
    Part,
    count_of,
    expect_array,
    expect_extra,
)

SEED = "codec_seed"  # the header field carrying it
MAX_SEED = 2**62


@dataclass(frozen=True, kw_only=True)
class RandomConfig(FractionConfig):
    """`sharing=random`: its `fraction`, drawn afresh for each message."""


def drawn_indices(seed: int, size: int, k: int) -> torch.Tensor:
    """The k distinct coordinates of [0, size) that `seed` draws, in increasing order: the same
    on the sender and every receiver."""
    chosen = np.random.default_rng(seed).choice(size, k, replace=False)
    return torch.from_numpy(np.sort(chosen))


class RandomSubset(Codec):
    """Each message draws a fresh seed from the node's own generator; no error feedback (as
    decentralizepy's SubSampling: what was not drawn this time may be drawn the next)."""

    config_class = RandomConfig
    randomized = True

    def __init__(self, config: RandomConfig, size: int, seed: int = 0):
        super().__init__(config, size, seed)
        self.k = count_of(config.fraction, size)

    def compress(self, vector: torch.Tensor) -> Encoded:
        seed = int(self.rng.integers(MAX_SEED))
        indices = drawn_indices(seed, self.size, self.k)
        return Encoded(vector[indices].numpy(), (), {SEED: seed})

    def decompress(self, values: np.ndarray, extra: tuple, aux: dict) -> Part:
        expect_extra(extra, aux, keys=(SEED,))
        seed = aux.get(SEED)
        if type(seed) is not int or not 0 <= seed < MAX_SEED:
            raise CodecError(f"no valid {SEED} in the header: {seed!r}")
        values = expect_array(values, np.float32, self.k, "values")
        indices = drawn_indices(seed, self.size, self.k)
        return Part(indices, torch.from_numpy(values.copy()))

    def message_bytes(self) -> tuple[int, int]:
        return 4 * self.k, 0  # the seed is a header field
