"""The geometry of a ring All-Reduce (LASGD's): segments and pieces of the flat model, and the
ring of a view, its members in id order."""

from __future__ import annotations

from dataclasses import dataclass

from node.algorithms.base import View


def split(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """np.array_split's bounds for [start, stop) in `parts`: the first ones one longer."""
    size, extra = divmod(stop - start, parts)
    bounds, lo = [], start
    for j in range(parts):
        hi = lo + size + (j < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def pieces(size: int, num_nodes: int, chunks: int) -> list[tuple[int, int]]:
    """(start, stop) of every piece: n segments of the flat vector, each in `chunks` pieces;
    piece g * chunks + c is chunk c of segment g."""
    return [p for lo, hi in split(0, size, num_nodes) for p in split(lo, hi, chunks)]


@dataclass(frozen=True)
class Ring:
    """The ring of one view: its members in id order and this node's place among them."""

    epoch: int
    members: tuple[int, ...]
    me: int  # this node's place in `members`
    pieces: list[tuple[int, int]]

    @classmethod
    def of(cls, view: View, node_id: int, model_size: int, chunks: int) -> Ring:
        me = view.members.index(node_id)
        return cls(view.epoch, view.members, me, pieces(model_size, len(view.members), chunks))

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def next(self) -> int:
        return self.members[(self.me + 1) % self.size]

    @property
    def prev(self) -> int:
        return self.members[(self.me - 1) % self.size]
