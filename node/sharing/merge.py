"""How received parts (whole or sparse) fold into a node's model: the uniform per-coordinate
mean (DivShare's rule) and a weighted mix (D-PSGD's Metropolis-Hastings rows)."""

from __future__ import annotations

import torch

from node.sharing.base import Part


def mean_of_parts(own: torch.Tensor, parts: list[Part]) -> torch.Tensor:
    """Coordinate p becomes (own_p + the values received at p) / (1 + how many were received
    at p). With whole vectors only: (own + sum) / (1 + k), the plain uniform mean, bit for bit."""
    total = own.clone()
    if all(part.dense for part in parts):
        for part in parts:
            total += part.values
        return total / (1 + len(parts))
    weight = torch.ones_like(own)
    for part in parts:
        if part.dense:
            total += part.values
            weight += 1
        else:
            total.index_add_(0, part.indices, part.values)
            weight.index_add_(0, part.indices, torch.ones_like(part.values))
    return total / weight


def weighted_mix(
    own: torch.Tensor, own_weight: float, parts: list[tuple[float, Part]]
) -> torch.Tensor:
    """own * own_weight + sum of w_j * x_j, where a coordinate a sender did not send counts as
    the node's own value there (decentralizepy's PartialModel fills them from its own model).
    With whole vectors only, the sum in the order given, as D-PSGD always summed."""
    sparse = [w for w, part in parts if not part.dense]
    mixed = own * (own_weight + sum(sparse) if sparse else own_weight)
    for weight, part in parts:
        if part.dense:
            mixed += weight * part.values
        else:
            mixed.index_add_(0, part.indices, weight * (part.values - own[part.indices]))
    return mixed
