"""Swift as the DivShare artifact runs it: full models to J random peers, FIFO backlog kept."""

from __future__ import annotations

from dataclasses import dataclass

from node.algorithms.base import AlgorithmConfig, check_degree
from node.algorithms.divshare import DivShare
from node.config import require


@dataclass(frozen=True, kw_only=True)
class SwiftConfig(AlgorithmConfig):
    """J distinct random peers per round; the model always travels whole (the artifact's
    tutorial/example_config_swift.ini: chunk_fraction = 1.0, graph_degree = 6)."""

    degree: int = 6  # J

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.degree >= 1, "algorithm.degree", "must be >= 1", "use e.g. 6")

    def check(self, num_nodes: int) -> None:
        check_degree(self.degree, num_nodes)

    @property
    def fraction(self) -> float:
        return 1.0  # one fragment: the artifact's Swift with chunk_fraction = 1.0


class Swift(DivShare):
    """The artifact's `Swift.py` is `DivShare.py` without the queue flush: a straggler's unsent
    models stay queued and go out in order, however stale. Receivers keep the latest model per
    sender and fold it in with the same uniform mean at their round boundary.

    Not SWIFT's original (Bornstein et al., ICLR 2023: a static topology, pull from shared
    buffers, client-influence weights); that one is not reproduced here.
    """

    config_class = SwiftConfig
    kinds = frozenset({"model"})
    drop_unsent = False
    kind = "model"
