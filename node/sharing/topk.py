"""`topk`: the k largest magnitudes with their indices, and error feedback on a model's changes
(decentralizepy's PartialModel with accumulation)."""

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


@dataclass(frozen=True, kw_only=True)
class TopKConfig(FractionConfig):
    """`sharing=topk`: its `fraction`, the k largest of each message."""


def largest(vector: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest magnitudes, in increasing order."""
    return torch.topk(vector.abs(), k, sorted=False).indices.sort().values


class ErrorFeedback:
    """What was not sent is kept and added to what comes next: each step selects the k largest
    of (residual + input), sends those, and keeps the rest as the new residual. Over any number
    of steps, the sum of what was sent plus the residual is the sum of the inputs."""

    def __init__(self, size: int, k: int):
        self.k = k
        self.residual = torch.zeros(size)

    def step(self, change: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, the values sent there) for this step's input `change`."""
        self.residual += change
        indices = largest(self.residual, self.k)
        sent = self.residual[indices]  # a copy (advanced indexing)
        self.residual[indices] = 0.0
        return indices, sent


class TopK(Codec):
    """`compress(v)`: v's k largest magnitudes, values and int32 indices (CHOCO's difference).

    `share(x)`: a model-exchanging algorithm sends the current values of the k coordinates
    whose accumulated change since they were last sent is largest, so that a coordinate that
    keeps changing a little is eventually sent (as decentralizepy's PartialModel with
    `accumulation`: selection by accumulated change, the parameters' values on the wire)."""

    config_class = TopKConfig

    def __init__(self, config: TopKConfig, size: int, seed: int = 0):
        super().__init__(config, size, seed)
        self.k = count_of(config.fraction, size)
        self.feedback = ErrorFeedback(size, self.k)
        self.reference: torch.Tensor | None = None  # the model at the last share

    def start(self, params: torch.Tensor) -> None:
        self.reference = params.clone()

    def compress(self, vector: torch.Tensor) -> Encoded:
        indices = largest(vector, self.k)
        return Encoded(vector[indices].numpy(), (indices.to(torch.int32).numpy(),))

    def share(self, params: torch.Tensor) -> Encoded:
        reference = self.reference if self.reference is not None else torch.zeros_like(params)
        indices, _ = self.feedback.step(params - reference)
        self.reference = params.clone()
        return Encoded(params[indices].numpy(), (indices.to(torch.int32).numpy(),))

    def decompress(self, values: np.ndarray, extra: tuple, aux: dict) -> Part:
        expect_extra(extra, aux, ("indices",))
        values = expect_array(values, np.float32, self.k, "values")
        indices = expect_array(extra[0], np.int32, self.k, "indices")
        if indices[0] < 0 or indices[-1] >= self.size or np.any(np.diff(indices) <= 0):
            raise CodecError(f"indices are not increasing coordinates in [0, {self.size})")
        return Part(torch.from_numpy(indices.astype(np.int64)), torch.from_numpy(values.copy()))

    def message_bytes(self) -> tuple[int, int]:
        return 4 * self.k, 4 * self.k
