"""`quantize`: stochastic, unbiased rounding to `bits` bits per value with one float32 scale per
block of values (QSGD-style, with the block's largest magnitude as its scale)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from node.checks import require
from node.sharing.base import (
    Codec,
    CodecError,
    Encoded,
    Part,
    SharingConfig,
    expect_array,
    expect_extra,
)

BITS = (1, 2, 4, 8)  # widths that pack whole into bytes


@dataclass(frozen=True, kw_only=True)
class QuantizeConfig(SharingConfig):
    bits: int = 4  # per value
    block: int = 256  # values sharing one scale

    def __post_init__(self) -> None:
        require(self.bits in BITS, "sharing.bits", f"{self.bits} bits", f"use one of {BITS}")
        require(
            self.block >= 8 and self.block % 8 == 0,
            "sharing.block",
            f"{self.block} is not a positive multiple of 8",
            "use e.g. 256",
        )


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes < 2**bits, 8 // bits to a byte, the first in the lowest bits."""
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    return np.bitwise_or.reduce(codes.reshape(-1, per_byte) << shifts, axis=1).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    mask = np.uint8((1 << bits) - 1)
    return ((packed[:, None] >> shifts) & mask).reshape(-1)


class Quantize(Codec):
    """A value v of a block with scale s (its largest magnitude) is mapped to u = (v/s + 1) L/2
    in [0, L], L = 2**bits - 1, and rounded to floor(u) or floor(u) + 1 with the probabilities
    that make the decoded value's expectation v. Its error is below one step, 2 s / L."""

    config_class = QuantizeConfig
    randomized = True

    def __init__(self, config: QuantizeConfig, size: int, seed: int = 0):
        super().__init__(config, size, seed)
        self.bits, self.block = config.bits, config.block
        self.levels = (1 << config.bits) - 1
        self.blocks = -(-size // config.block)
        self.packed_bytes = self.blocks * config.block * config.bits // 8

    def compress(self, vector: torch.Tensor) -> Encoded:
        padded = np.zeros(self.blocks * self.block, dtype=np.float32)
        padded[: self.size] = vector.numpy()
        blocks = padded.reshape(self.blocks, self.block)
        scales = np.abs(blocks).max(axis=1)
        safe = np.where(scales > 0, scales, np.float32(1.0))
        u = (blocks / safe[:, None] + 1) * np.float32(self.levels / 2)
        low = np.floor(u)
        up = self.rng.random(u.shape, dtype=np.float32) < (u - low)
        codes = np.clip(low + up, 0, self.levels).astype(np.uint8)
        return Encoded(pack(codes.reshape(-1), self.bits), (scales.astype(np.float32),))

    def decompress(self, values: np.ndarray, extra: tuple, aux: dict) -> Part:
        expect_extra(extra, aux, ("scales",))
        packed = expect_array(values, np.uint8, self.packed_bytes, "codes")
        scales = expect_array(extra[0], np.float32, self.blocks, "scales")
        if not np.all(np.isfinite(scales)) or np.any(scales < 0):
            raise CodecError("scales must be finite and >= 0")
        codes = unpack(packed, self.bits).reshape(self.blocks, self.block).astype(np.float32)
        decoded = (codes * np.float32(2 / self.levels) - 1) * scales[:, None]
        return Part(None, torch.from_numpy(decoded.reshape(-1)[: self.size].copy()))

    def message_bytes(self) -> tuple[int, int]:
        return self.packed_bytes, 4 * self.blocks
