"""Who can reach whom over emulated time, as a scenario schedules it (nodes down after a crash
or leave until they join, flapping links, partitions): pure data every node holds the same
copy of, consulted at each message's instants. Rate and latency changes are the links' own
(`LinkSpec`)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

INF = float("inf")
MEMBERSHIP = ("crash", "leave", "join")
REACHABILITY = (*MEMBERSHIP, "link_down", "link_up", "partition", "heal")
# Why a message was lost: its sender or receiver was down, a link of theirs was down
# (flapping), or a partition held between them.
LOST_REASONS = ("down", "link", "partition")


@dataclass(frozen=True, order=True)
class Action:
    """One change at emulated time t: crash, leave, join, link, path, link_down, link_up,
    partition or heal."""

    t: float
    order: int  # the event's position, so that equal times keep the schedule's order
    kind: str = field(compare=False)
    node: int | None = field(default=None, compare=False)
    values: dict = field(default_factory=dict, compare=False)
    event: str = field(default="", compare=False)  # the event it came from, for errors


class _Intervals:
    """Half-open emulated intervals [start, end), disjoint and sorted."""

    def __init__(self, spans: list[tuple[float, float]]):
        self.starts = [a for a, _ in spans]
        self.ends = [b for _, b in spans]

    def __contains__(self, t: float) -> bool:
        i = bisect.bisect_right(self.starts, t) - 1
        return i >= 0 and t < self.ends[i]


def _spans(actions: list[Action], off: str, on: str, starts_off: bool) -> list[tuple]:
    spans, since = [], 0.0 if starts_off else None
    for a in actions:
        if a.kind == off and since is None:
            since = a.t
        elif a.kind == on and since is not None:
            if a.t > since:
                spans.append((since, a.t))
            since = None
    if since is not None:
        spans.append((since, INF))
    return spans


class Reachability:
    """`lost(src, dst, t)`: why a message between two nodes at emulated `t` is lost, or None.

    A node is down from its crash or leave until its join (from 0 if its first membership
    event is a join); a flapping node's links are down in its down phases; a partition splits
    the nodes into its groups, and the nodes it does not list form one more group."""

    def __init__(self, actions: Iterable[Action] = ()):
        actions = sorted(a for a in actions if a.kind in REACHABILITY)
        self.static = not actions
        self.changes = sorted({a.t for a in actions})  # the instants at which anything changes
        by_node: dict[int, list[Action]] = {}
        for a in actions:
            if a.node is not None:
                by_node.setdefault(a.node, []).append(a)
        self.down: dict[int, _Intervals] = {}
        self.cut: dict[int, _Intervals] = {}
        self._down_spans: dict[int, list[tuple[float, float]]] = {}
        for node, mine in by_node.items():
            membership = [a for a in mine if a.kind in MEMBERSHIP]
            if membership:
                marks = [_as(a, "on" if a.kind == "join" else "off") for a in membership]
                spans = _spans(marks, "off", "on", starts_off=membership[0].kind == "join")
                self.down[node], self._down_spans[node] = _Intervals(spans), spans
            flaps = [a for a in mine if a.kind in ("link_down", "link_up")]
            if flaps:
                self.cut[node] = _Intervals(_spans(flaps, "link_down", "link_up", False))
        # Partitions: (start, end, group of each listed node)
        self.partitions: list[tuple[float, float, dict[int, int]]] = []
        opened = None
        for a in actions:
            if a.kind == "partition":
                groups = {n: i for i, g in enumerate(a.values["groups"]) for n in g}
                opened = (a.t, groups)
            elif a.kind == "heal" and opened is not None:
                self.partitions.append((opened[0], a.t, opened[1]))
                opened = None
        if opened is not None:
            self.partitions.append((opened[0], INF, opened[1]))

    def is_up(self, node: int, t: float) -> bool:
        down = self.down.get(node)
        return down is None or t not in down

    def lost(self, src: int, dst: int, t: float) -> str | None:
        if self.static:
            return None
        if not (self.is_up(src, t) and self.is_up(dst, t)):
            return "down"
        if any(t in self.cut[n] for n in (src, dst) if n in self.cut):
            return "link"
        for start, end, groups in self.partitions:
            if start <= t < end and groups.get(src, -1) != groups.get(dst, -1):
                return "partition"
        return None

    def up_since(self, node: int, t: float) -> float | None:
        """When the up period of `node` that holds `t` began (0.0 for one up from the start),
        or None if it is down at `t`."""
        if not self.is_up(node, t):
            return None
        ends = [b for _, b in self._down_spans.get(node, []) if b <= t]
        return max(ends, default=0.0)

    def down_spans(self, node: int) -> list[tuple[float, float]]:
        """The emulated intervals [from, to) `node` is down (to = inf: for good)."""
        return list(self._down_spans.get(node, []))

    def up_periods(self, node: int, duration: float) -> list[tuple[float, float]]:
        """The intervals of [0, duration) `node` is up, in order."""
        periods, t = [], 0.0
        for a, b in self.down_spans(node):
            if a > t:
                periods.append((t, min(a, duration)))
            t = b
            if t >= duration:
                break
        if t < duration:
            periods.append((t, duration))
        return [(a, b) for a, b in periods if b > a]


def crash_rejoins(actions: Iterable[Action]) -> list[Action]:
    """The joins that bring a crashed node back: each needs a new process."""
    crashed, out = set(), []
    for a in sorted(actions):
        if a.kind == "crash":
            crashed.add(a.node)
        elif a.kind == "join" and a.node in crashed:
            crashed.discard(a.node)
            out.append(a)
        elif a.kind == "leave":
            crashed.discard(a.node)
    return out


def _as(action: Action, kind: str) -> Action:
    return Action(action.t, action.order, kind, action.node)
