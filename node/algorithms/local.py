"""Local training only: no communication at all, the lower bound every algorithm must beat."""

from __future__ import annotations

from node.algorithms.base import Algorithm


class Local(Algorithm):
    """Each node trains on its own shard and never sends: how far apart models drift, and how
    good a node gets, without collaboration. Every hook keeps its default: no messages, no
    kinds, nothing to aggregate."""

    merges_at = "round"  # nothing ever arrives: a round computes back to back
