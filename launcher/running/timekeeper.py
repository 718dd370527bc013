"""The launcher's virtual clock (`clock=virtual`): the run's emulated time, kept here and moved
by the conservative rule. Time stands still while any node has work at the current instant; it
moves to the next instant anything is due only when every live node waits and every message
handed over has been admitted by its destination. This pure `TimeKeeper` decides;
launcher/running/virtual_time.py's `KeeperThread` carries its decisions out over the keeper's socket
(transport/clock/keeper_link.py)."""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from dataclasses import dataclass

from transport.clock.keeper_link import Report

INF = math.inf


@dataclass(frozen=True)
class Advance:
    node: int
    incarnation: int
    gen: int
    t: float
    horizon: float = -INF  # nobody sends anything before: each node acts alone until then
    slot: int = -1  # which of its machine's slots (cores) it computes in; -1: no gate


@dataclass(frozen=True)
class Sync:
    node: int
    incarnation: int
    admitted: int  # report again once this many messages are admitted


@dataclass(frozen=True)
class Crash:
    node: int
    t: float  # its scenario's instant; everything up to it is done


@dataclass(frozen=True)
class End:
    followers: tuple[tuple[int, int], ...]  # (node, incarnation) of every process that left


@dataclass(frozen=True)
class Stuck:
    nodes: tuple[int, ...]  # every live node waits for ever: nothing can move time


@dataclass
class Follower:
    """What the keeper knows of one node's current process."""

    incarnation: int
    state: str = "busy"  # busy (woken, or not reported yet), idle, syncing, left, dead
    due: float = INF  # the instant it waits for
    quiet: float = -INF  # it sends nothing before (its next round end or delivery)
    admitted: int = 0  # messages it admitted in all (this process)
    woken: bool = False  # holds one of its machine's slots
    slot: int = -1  # which one (kept for its next wake, when free: its caches are there)
    machine: str = "local"

    @property
    def live(self) -> bool:
        return self.state in ("busy", "idle", "syncing")


@dataclass
class KeeperCounts:
    """What the keeper did, for the summary: phases (ADVANCE rounds), messages to nodes."""

    phases: int = 0
    advances: int = 0  # ADVANCE frames sent
    syncs: int = 0
    reports: int = 0
    crashes: int = 0


class TimeKeeper:
    """The rule, as pure state: feed it what nodes say (`report`, `leave`) and what the launcher
    saw (`depart`, `cancel_join`); each call returns what to do, in order.

    Compute gate: at most `slots[machine]` nodes of a machine are woken at once (None:
    unlimited); the others due at the same instant wait for a slot in node order. A node due at
    an instant acts on what arrived before it, never on what others send at it (those reach it
    at its next ADVANCE, in stamp order), so the order in which they are woken changes nothing.

    Scenario: a planned crash kills its node once everything up to its instant is done; a
    crashed node that joins again holds time before its join instant until its new process
    (the next incarnation) has reported."""

    def __init__(
        self,
        nodes,
        machine_of: dict[int, str] | None = None,
        slots: dict[str, int] | None = None,
        crashes=(),
        joins=(),
    ):
        machine_of = machine_of or {}
        self.followers = {n: Follower(0, machine=machine_of.get(n, "local")) for n in nodes}
        self.slots = slots
        self.t, self.gen = 0.0, 0
        self.horizon = -INF
        self.sent: Counter = Counter()  # per destination, to its current process
        self.crashes = sorted((t, n) for t, n in crashes)
        self.joins: dict[int, list[float]] = {}
        for t, n in sorted(joins):
            self.joins.setdefault(n, []).append(t)
        self.queue: deque[int] = deque()  # due now, waiting for a slot
        self.running: Counter = Counter()  # woken and not yet reported, per machine
        self.free: dict[str, list[int]] = {}  # each machine's free slots, lowest first
        self.counts = KeeperCounts()
        self.done = False

    # ---- what the nodes and the launcher say ---------------------------------------------------
    def report(self, node: int, incarnation: int, report: Report) -> list:
        f = self.followers.get(node)
        if f is None or incarnation < f.incarnation:
            return []
        if incarnation > f.incarnation:  # a crashed node's new process: it starts afresh
            f = self.followers[node] = Follower(incarnation, machine=f.machine)
            self.sent[node] = 0
            if self.joins.get(node):
                self.joins[node].pop(0)
        if not f.live:
            return []
        self.counts.reports += 1
        self._release(node)
        f.state, f.due, f.quiet = "idle", report.due, report.quiet
        f.admitted = max(f.admitted, report.admitted)
        for dst, count in report.sent.items():
            self.sent[dst] += count
        return self._decide()

    def leave(self, node: int, incarnation: int) -> list:
        f = self.followers.get(node)
        if f is None or incarnation != f.incarnation or not f.live:
            return []
        self._release(node)
        f.state = "left"
        return self._decide()

    def depart(self, node: int) -> list:
        """`node`'s process died (seen by the launcher): it holds nothing any more. A process
        started to join again that dies before it reported gives its join up."""
        f = self.followers.get(node)
        if f is not None and not f.live and self.joins.get(node):
            return self.cancel_join(node)
        if f is None or not f.live:
            return []
        self._release(node)
        f.state = "dead"
        return self._decide()

    def cancel_join(self, node: int) -> list:
        """The new process of `node` could not be started: time stops waiting for it."""
        if self.joins.get(node):
            self.joins[node].pop(0)
        return self._decide()

    # ---- what the keeper knows --------------------------------------------------------------
    def live(self) -> dict[int, Follower]:
        return {n: f for n, f in self.followers.items() if f.live}

    def waiting_on(self) -> dict:
        """Why time does not move now: nodes at work, nodes owing messages, joins awaited."""
        live = self.live()
        return {
            "busy": sorted(n for n, f in live.items() if f.state == "busy"),
            "in_flight": {
                n: self.sent[n] - f.admitted for n, f in live.items() if self.sent[n] > f.admitted
            },
            "joins": sorted(n for n, ts in self.joins.items() if ts),
        }

    # ---- the rule -----------------------------------------------------------------------------
    def _release(self, node: int) -> None:
        """`node` is no longer at work: its slot is free, it waits for nothing in line."""
        f = self.followers[node]
        if f.woken:
            f.woken = False
            self.running[f.machine] -= 1
            if f.slot >= 0:
                heapq.heappush(self.free[f.machine], f.slot)
        if f.state in ("busy", "syncing"):
            f.state = "idle"
        if node in self.queue:
            self.queue.remove(node)

    def _decide(self) -> list:
        actions = self._wake()
        live = self.live()
        if self.queue or any(f.state != "idle" for f in live.values()):
            return actions
        owed = [(n, f) for n, f in live.items() if self.sent[n] > f.admitted]
        if owed:  # messages handed over and not yet admitted: ask for a report once they are
            for n, f in owed:
                f.state = "syncing"
                self.counts.syncs += 1
                actions.append(Sync(n, f.incarnation, self.sent[n]))
            return actions
        due = min((f.due for f in live.values()), default=INF)
        while self.crashes and (self.crashes[0][0] < due or due == INF):
            t, n = self.crashes.pop(0)
            self.counts.crashes += 1
            actions.append(Crash(n, t))
            if live.pop(n, None) is not None:
                self._release(n)
                self.followers[n].state = "dead"
                due = min((f.due for f in live.values()), default=INF)
        held = min((ts[0] for ts in self.joins.values() if ts), default=INF)
        if held < INF and due >= held:
            return actions  # a crashed node's new process must report first
        if due == INF:
            if live and not self.done:
                actions.append(Stuck(tuple(sorted(live))))
            if not live and not self.done:
                self.done = True
                left = [(n, f.incarnation) for n, f in self.followers.items() if f.state == "left"]
                actions.append(End(tuple(sorted(left))))
            return actions
        self.gen += 1
        self.t = max(self.t, due)
        # Lookahead: a node sends only at its round ends and in answer to deliveries, so no
        # message is made before the earliest instant any node may send; until then each
        # node goes through its own instants alone (a crashed node's new process reports
        # first: it may send from its join on).
        self.horizon = min(min(f.quiet for f in live.values()), held)
        self.counts.phases += 1
        self.queue.extend(sorted(n for n, f in live.items() if f.due <= self.t))
        return actions + self._wake()

    def _wake(self) -> list:
        """ADVANCE as many nodes due now as their machines have free slots, in node order."""
        woken, waiting = [], deque()
        for n in self.queue:
            f = self.followers[n]
            if self.slots is not None and self.running[f.machine] >= self.slots[f.machine]:
                waiting.append(n)
                continue
            f.state, f.woken = "busy", True
            self.running[f.machine] += 1
            if self.slots is not None:
                free = self.free.setdefault(f.machine, list(range(self.slots[f.machine])))
                if f.slot in free:
                    free.remove(f.slot)
                    heapq.heapify(free)
                else:
                    f.slot = heapq.heappop(free)
            self.counts.advances += 1
            woken.append(Advance(n, f.incarnation, self.gen, self.t, self.horizon, f.slot))
        self.queue = waiting
        return woken
