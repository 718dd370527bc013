"""The events a scenario schedules, one dataclass per kind, as written in `scenario.events`
(each a mapping with `t` and its kind's key, e.g. {t: 5.0, crash: [3]}), checked for keys and
types as structured configs."""

from __future__ import annotations

from dataclasses import dataclass

from node.checks import hinted

NODES_FIX = "a list of node ids, e.g. [3, 4]"


@dataclass
class Crash:
    t: float = hinted("emulated seconds, e.g. t: 5.0")
    crash: list[int] = hinted(NODES_FIX)  # killed hard: no goodbye


@dataclass
class Leave:
    t: float = hinted("emulated seconds, e.g. t: 5.0")
    leave: list[int] = hinted(NODES_FIX)  # graceful


@dataclass
class Join:
    t: float = hinted("emulated seconds, e.g. t: 5.0")
    join: list[int] = hinted(NODES_FIX)  # a new process, or one that left or crashed
    model: str = "kept"  # kept: the model it had; initial: the run's initial model


@dataclass
class Link:
    t: float = hinted("emulated seconds, e.g. t: 5.0")
    link: int = hinted("a node id, e.g. link: 3")
    up_mbps: float | None = None
    down_mbps: float | None = None
    latency_ms: float | None = None


@dataclass
class PathEvent:
    t: float = hinted("emulated seconds, e.g. t: 5.0")
    path: list[int] = hinted("two node ids, e.g. path: [3, 7]")
    rate_mbps: float = hinted("Mbit/s, e.g. rate_mbps: 2.0")


@dataclass
class Partition:
    t: float = hinted("emulated seconds, e.g. t: 5.0")
    partition: list[list[int]] = hinted("groups of node ids, e.g. [[0, 1], [2, 3]]")


@dataclass
class Heal:
    t: float = hinted("emulated seconds, e.g. t: 5.0")
    heal: bool = True


@dataclass
class Flap:
    t: float = hinted("emulated seconds, e.g. t: 5.0")
    flap: int = hinted("a node id, e.g. flap: 3")  # its links down and up again
    period: float = hinted("emulated seconds of one down-and-up cycle, e.g. period: 2.0")
    until: float | None = None  # the end of the run if unset


@dataclass
class Churn:
    t: float = hinted("emulated seconds, e.g. t: 0.0")
    churn: float = hinted("the fraction of nodes that leave and rejoin, e.g. churn: 0.1")
    period: float = hinted("mean emulated seconds a churning node stays up, or down")
    until: float | None = None  # the end of the run if unset; every churned node is back then
    seed: int = 0


KINDS = {
    "crash": Crash,
    "leave": Leave,
    "join": Join,
    "link": Link,
    "path": PathEvent,
    "partition": Partition,
    "heal": Heal,
    "flap": Flap,
    "churn": Churn,
}
