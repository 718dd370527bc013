"""What an asynchronous node merges at its next aggregation: the latest value from each source
(a sender, or a sender's fragment), as DivShare, Swift and AD-PSGD keep them."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class Latest(Generic[Value]):
    """The value from the latest round of each source since the last `take`; a value from an
    older round than the one kept (a message overtaken on its way) is ignored."""

    def __init__(self) -> None:
        self.kept: dict[Hashable, tuple[int, Value]] = {}  # source -> (round, value)

    def offer(self, source: Hashable, round_: int, value: Value) -> None:
        if source not in self.kept or self.kept[source][0] <= round_:
            self.kept[source] = (round_, value)

    def __len__(self) -> int:
        return len(self.kept)

    def staleness(self, round_: int) -> float:
        """How many rounds the kept values are behind `round_`, on average (some kept)."""
        return sum(round_ - r for r, _ in self.kept.values()) / len(self.kept)

    def take(self) -> list[tuple[Hashable, Value]]:
        """Every (source, value) kept, in the order the sources first came; none kept after."""
        taken = [(source, value) for source, (_, value) in self.kept.items()]
        self.kept.clear()
        return taken
