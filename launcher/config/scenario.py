"""A scenario: what changes while a run goes, in emulated time (Kollaps's dynamic schedules,
Thunderstorm's partitions, flapping links and churn): nodes that crash, leave or join, links
whose rate or latency change, partitions and heals. Validated before any process starts, each
error naming the event, and expanded into one timeline of primitive actions: the launcher
kills crashing nodes, every node's transport consults who reaches whom (`Reachability`),
rate and latency changes go into each node's `LinkSpec`, a node leaves and joins itself.

Times (t, until, period) may be emulated seconds or a share of the run ("20%");
`partition: halves` splits the nodes into two halves by id."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.config.events import KINDS, NODES_FIX, Churn
from launcher.config.sections import typed
from launcher.config.trace import read_trace
from node.checks import at_least, require
from transport import LinkSpec
from transport.dynamics import MEMBERSHIP, REACHABILITY, Action


@dataclass
class ScenarioSection:
    """The `scenario` section: events (conf/scenario/*.yaml, or scenario.events=[...]) and a
    link trace file."""

    events: list[Any] = field(default_factory=list)
    trace: str | None = None  # CSV: t,node,up_mbps,down_mbps,latency_ms


# ---------------------------------------------------------------- reading and expanding


class Scenario:
    """The events of `scenario.events` (and the link trace file, if any) for a run of
    `num_nodes` nodes and `duration` emulated seconds; `actions` is the expanded timeline."""

    def __init__(
        self,
        events: list,
        num_nodes: int,
        duration: float,
        trace: str | None = None,
        availability: list[Action] | None = None,
    ):
        self.num_nodes, self.duration = num_nodes, duration
        require(isinstance(events, list), "scenario.events", "is not a list", "a list of events")
        actions: list[Action] = []
        for i, raw in enumerate(events):
            actions += self._expand(raw, f"scenario.events[{i}]", len(actions))
        if trace:
            actions += read_trace(Path(trace), num_nodes, duration, len(actions))
        actions += availability or []  # leaves and joins from an availability trace
        self.actions = sorted(actions)
        self._check_membership()
        self._check_partitions()

    def _expand(self, raw, key: str, order: int) -> list[Action]:
        kinds = [k for k in KINDS if isinstance(raw, dict) and k in raw]
        require(
            len(kinds) == 1,
            key,
            f"names {kinds or 'no'} event kind{'s' if len(kinds) != 1 else ''}",
            f"one of {list(KINDS)}, with t, e.g. {{t: 5.0, crash: [3]}}",
        )
        kind = kinds[0]
        raw = {
            k: self._instant(v, f"{key}.{k}") if k in ("t", "until", "period") else v
            for k, v in raw.items()
        }
        if kind == "partition" and raw["partition"] == "halves":
            half = self.num_nodes // 2
            raw["partition"] = [list(range(half)), list(range(half, self.num_nodes))]
        event = typed(KINDS[kind], raw, key)
        ok = 0.0 <= event.t < self.duration
        require(ok, f"{key}.t", f"{event.t} is not within the run [0, {self.duration})", "fix t")

        def act(t: float, what: str, node=None, **values) -> Action:
            return Action(t, order, what, node, values, key)

        if kind in MEMBERSHIP:
            nodes = getattr(event, kind)
            self._nodes(nodes, f"{key}.{kind}")
            if kind == "join":
                require(
                    event.model in ("kept", "initial"),
                    f"{key}.model",
                    f"{event.model!r} is not a model to join with",
                    "kept (the model it had) or initial (the run's initial model)",
                )
                return [act(event.t, kind, n, model=event.model) for n in nodes]
            return [act(event.t, kind, n) for n in nodes]
        if kind == "link":
            self._nodes([event.link], f"{key}.link")
            values = {
                k: getattr(event, k)
                for k in ("up_mbps", "down_mbps", "latency_ms")
                if getattr(event, k) is not None
            }
            require(bool(values), key, "changes nothing", "set up_mbps, down_mbps or latency_ms")
            for k, v in values.items():
                at_least(v, 0.0 if k == "latency_ms" else 1e-6, f"{key}.{k}")
            return [act(event.t, "link", event.link, **values)]
        if kind == "path":
            require(len(event.path) == 2, f"{key}.path", "is not two nodes", "e.g. path: [3, 7]")
            self._nodes(event.path, f"{key}.path")
            at_least(event.rate_mbps, 1e-6, f"{key}.rate_mbps")
            src, dst = event.path
            return [act(event.t, "path", src, dst=dst, rate_mbps=event.rate_mbps)]
        if kind == "partition":
            groups = event.partition
            require(
                len(groups) >= 2,
                f"{key}.partition",
                "has fewer than two groups",
                "e.g. partition: [[0, 1], [2, 3]]",
            )
            self._nodes([n for g in groups for n in g], f"{key}.partition")
            return [act(event.t, "partition", groups=[list(g) for g in groups])]
        if kind == "heal":
            return [act(event.t, "heal")]
        until = self._until(event.until, event.t, key)
        if kind == "flap":
            self._nodes([event.flap], f"{key}.flap")
            at_least(event.period, 1e-3, f"{key}.period")
            out, t = [], event.t
            while t < until:  # down for half a period, then up for the other half
                out.append(act(t, "link_down", event.flap))
                out.append(act(min(until, t + event.period / 2), "link_up", event.flap))
                t += event.period
            return out
        return self._churn(event, until, key, order)

    def _churn(self, event: Churn, until: float, key: str, order: int) -> list[Action]:
        ok = 0.0 < event.churn <= 1.0
        require(ok, f"{key}.churn", f"{event.churn} is not a fraction in (0, 1]", "e.g. 0.1")
        at_least(event.period, 1e-3, f"{key}.period")
        rng = random.Random(event.seed)
        count = max(1, round(event.churn * self.num_nodes))
        out = []
        for node in sorted(rng.sample(range(self.num_nodes), count)):
            t, up = event.t, True
            while True:
                t += rng.expovariate(1.0 / event.period)
                if t >= until:
                    break
                out.append(Action(t, order, "leave" if up else "join", node, {}, key))
                up = not up
            if not up:  # every churned node is back when the churn ends
                out.append(Action(until, order, "join", node, {"model": "kept"}, key))
        return out

    def _instant(self, value, key: str):
        """A time as given: emulated seconds, or "P%" of the run."""
        if not isinstance(value, str) or not value.endswith("%"):
            return value
        try:
            return float(value[:-1]) / 100 * self.duration
        except ValueError:
            require(False, key, f"{value!r} is not a time", 'emulated seconds, or e.g. "20%"')

    def _until(self, until: float | None, t: float, key: str) -> float:
        until = self.duration if until is None else until
        ok = t < until <= self.duration
        require(
            ok,
            f"{key}.until",
            f"{until} is not after t={t} and within the run",
            f"e.g. until: {self.duration:g} (the end)",
        )
        return until

    def _nodes(self, nodes: list[int], key: str) -> None:
        require(bool(nodes), key, "names no node", NODES_FIX)
        bad = [n for n in nodes if not 0 <= n < self.num_nodes]
        if bad:
            require(False, key, f"{bad[0]} is not a node id", f"use 0..{self.num_nodes - 1}")
        require(len(set(nodes)) == len(nodes), key, "repeats a node", NODES_FIX)

    def _check_membership(self) -> None:
        """Replays crash, leave and join: a node that is down cannot leave or crash, one that
        is up cannot join; a node whose first membership event is a join starts down."""
        first: dict[int, str] = {}
        for a in self.actions:
            if a.kind in MEMBERSHIP:
                first.setdefault(a.node, a.kind)
        up = {n: first.get(n) != "join" for n in range(self.num_nodes)}
        seen: dict[tuple[int, float], str] = {}
        for a in self.actions:
            if a.kind not in MEMBERSHIP:
                continue
            other = seen.get((a.node, a.t))
            require(
                other is None,
                a.event,
                f"node {a.node} also changes at t={a.t:g} in {other}",
                "one membership event per node and instant",
            )
            seen[(a.node, a.t)] = a.event
            if a.kind == "join":
                require(
                    not up[a.node],
                    a.event,
                    f"node {a.node} is up at t={a.t:g}",
                    "it must leave or crash before it joins",
                )
            else:
                require(
                    up[a.node],
                    a.event,
                    f"node {a.node} is already down at t={a.t:g}",
                    "it must join before it leaves or crashes again",
                )
            up[a.node] = a.kind == "join"

    def _check_partitions(self) -> None:
        active = None
        for a in self.actions:
            if a.kind == "partition":
                require(
                    active is None,
                    a.event,
                    f"a partition ({active}) is still in place",
                    "heal it first: {t: ..., heal: true}",
                )
                active = a.event
            elif a.kind == "heal":
                require(active is not None, a.event, "heals no partition", "remove it")
                active = None

    # ---- what the run does with it ------------------------------------------------------------
    @property
    def reachability(self) -> tuple[Action, ...]:
        """What every node's transport consults: membership, flapping links, partitions."""
        return tuple(a for a in self.actions if a.kind in REACHABILITY)

    def with_link_changes(self, links: tuple[LinkSpec, ...]) -> tuple[LinkSpec, ...]:
        """Each node's links with the scenario's rate and latency changes from their instants."""
        changes = [
            {"up_changes": [], "down_changes": [], "latency_changes": [], "path_changes": {}}
            for _ in links
        ]
        for a in self.actions:
            if a.kind == "link":
                for key, value in a.values.items():
                    changes[a.node][_CHANGES[key]].append((a.t, value))
            elif a.kind == "path":
                paths = changes[a.node]["path_changes"]
                paths.setdefault(a.values["dst"], []).append((a.t, a.values["rate_mbps"]))
        return tuple(
            dataclasses.replace(
                link,
                up_changes=tuple(c["up_changes"]),
                down_changes=tuple(c["down_changes"]),
                latency_changes=tuple(c["latency_changes"]),
                path_changes={dst: tuple(v) for dst, v in c["path_changes"].items()},
            )
            if any(c.values())
            else link
            for link, c in zip(links, changes, strict=True)
        )


_CHANGES = {"up_mbps": "up_changes", "down_mbps": "down_changes", "latency_ms": "latency_changes"}


def plan_scenario(
    cfg: dict, num_nodes: int, duration: float, cwd: str | None, availability=None
) -> Scenario:
    """The `scenario` section checked and expanded (a relative trace path is the caller's),
    with the leaves and joins of an availability trace, if any."""
    section = typed(ScenarioSection, cfg.get("scenario") or {}, "scenario")
    trace = section.trace
    if trace and not Path(trace).is_absolute():
        trace = str(Path(cwd or ".") / trace)
    return Scenario(section.events, num_nodes, duration, trace, availability)
