"""`full`: every coordinate as float32, the whole model: what algorithms sent before codecs."""

from __future__ import annotations

import numpy as np
import torch

from node.sharing.base import Codec, Encoded, Part, expect_array, expect_extra


class Full(Codec):
    @property
    def full(self) -> bool:
        return True

    def compress(self, vector: torch.Tensor) -> Encoded:
        return Encoded(vector.clone().numpy())

    def decompress(self, values: np.ndarray, extra: tuple, aux: dict) -> Part:
        expect_extra(extra, aux)
        values = expect_array(values, np.float32, self.size, "values")
        return Part(None, torch.from_numpy(values.copy()))  # not the receive buffer

    def message_bytes(self) -> tuple[int, int]:
        return 4 * self.size, 0
