"""LASGD (Avidor et al., arXiv 2203.13085): local asynchronous SGD with ring All-Reduce sync.

RECONSTRUCTION, not the paper's algorithm (its pseudo-code is not public): the one in
baselines-and-peers.md A.1. Computation never waits for the network; a synchronisation process
repeatedly snapshots s = x, averages the snapshots of all nodes with a ring All-Reduce and
folds the average back keeping the local progress made meanwhile, x <- avg + (x - s).

The synchronisation is a state machine run by the training thread between local steps:

- All-Reduce k starts at this node's first round boundary (`round_messages`) after its
  All-Reduce k-1 completed and at least `sync_every` rounds after it started k-1. One
  All-Reduce is in flight per node at a time. Ring order by id: i sends only to i+1 mod n
  (below, n and ids are the ring's: its size and a member's place in it).
- The model is split np.array_split-like into n segments, each into `chunks` pieces; piece
  p = g * chunks + c is chunk c of segment g and travels as its own message (`frag` = p), so
  more chunks pipeline a segment along the ring. Reduce-scatter ("reduce", aux {"ar": k,
  "step": s}): node i starts segment i; a node adds its own snapshot of the piece to what it
  received and passes it on; after n-1 hops node i holds the sum of segment i+1, divides it
  by n once and starts the all-gather ("gather"), which passes that average on n-2 more hops.
  Each sum is computed once, so every node ends with a bitwise-identical average. Per
  All-Reduce a node sends 2(n-1) segments, 2(n-1)/n of the model, plus headers.
- A neighbour may already be in All-Reduce k while this node still trains towards its start
  of k. Its messages are kept (by k) until this node starts k at its own round boundary: a
  message does NOT make a node start early. The snapshot is then always a round-boundary
  model, the cadence stays the configured one per node rather than the fastest node's, and
  the cost is bounded: the wait for the last node's boundary is at most one round (a few
  steps of skew when every node computes at the same speed).
- The average is folded back as soon as its last piece arrives (the next step starts from it);
  `aggregate` only reports counters; `ready` is always true: rounds never wait.
- Absent members (`on_absent`). With "reform" (the default) the ring is the node's view
  (`NodeContext.view`): the members up and reachable from it by the scenario, less the deaths
  the launcher announced, which every member computes alike. When the view changes (its
  `epoch`, counted the same on every node), an All-Reduce in flight is abandoned (counted: the
  model keeps its local progress, nothing is folded), the numbering restarts at 0 and the next
  one runs on the new ring, segments re-cut for its size; a message tagged with a view this
  node has not reached yet is kept until it does, one of an older view is stale. An
  All-Reduce that makes no progress for `timeout` emulated seconds (a death not announced, a
  lost message) is abandoned too, counted, and the next one starts at the next round boundary:
  never a hang. With "error" the ring is every node, always, and such a stall raises
  RuntimeError (not Rejected, which the runtime would count as a refused message), which ends
  the node and so the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from node.algorithms.base import (
    Algorithm,
    AlgorithmConfig,
    Incoming,
    NodeContext,
    Outgoing,
    Rejected,
    View,
)
from node.algorithms.ring import Ring, pieces, split
from node.checks import require

ON_ABSENT = ("reform", "error")


@dataclass(frozen=True, kw_only=True)
class LASGDConfig(AlgorithmConfig):
    """`sync_every`: rounds between two All-Reduce starts at least; `chunks`: pieces per ring
    segment; `timeout`: emulated seconds an All-Reduce may go without progress; `on_absent`:
    what absent members do to the ring (reform it without them, or end the run)."""

    sync_every: int = 1  # at least this many rounds between two All-Reduce starts of a node
    chunks: int = 1  # pieces per ring segment; more pipeline a segment along the ring
    timeout: float = 10.0  # emulated seconds an All-Reduce may go without progress
    on_absent: str = "reform"  # or "error": a stalled All-Reduce ends the run

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.sync_every >= 1, "algorithm.sync_every", "must be >= 1", "use e.g. 1")
        require(self.chunks >= 1, "algorithm.chunks", "must be >= 1", "use e.g. 1")
        require(self.timeout > 0, "algorithm.timeout", "must be > 0", "use e.g. 10.0")
        require(
            self.on_absent in ON_ABSENT,
            "algorithm.on_absent",
            f"{self.on_absent!r} is not one of {ON_ABSENT}",
            "use reform (the ring goes on without absent members) or error (the run ends)",
        )


@dataclass
class AllReduce:
    """One All-Reduce in flight at this node: its snapshot and the averages gathered so far."""

    k: int
    snapshot: np.ndarray  # s: the model when this node started k; never mutated
    average: np.ndarray  # filled piece by piece
    started: float
    progressed: float  # emulated time of the start or of the last message that advanced it
    reduced: set[int] = field(default_factory=set)  # pieces whose partial sum came in
    averaged: set[int] = field(default_factory=set)  # pieces whose average this node holds


class LASGD(Algorithm):
    """Local SGD that never waits, plus one ring All-Reduce at a time; see the module doc."""

    config_class = LASGDConfig
    kinds = frozenset({"reduce", "gather"})
    merges_at = "step"  # the average is folded in when its last piece arrives
    # Never drops (that would cut the collective) and rounds never wait: it overlaps compute.

    def __init__(self, config: LASGDConfig, ctx: NodeContext):
        super().__init__(config, ctx)
        everyone = View(0, tuple(range(ctx.num_nodes)))
        self.ring = Ring.of(everyone, ctx.node_id, ctx.model_size, config.chunks)
        self.viewed = config.on_absent == "error"  # "reform": adopt the view at the first hook
        self.active: AllReduce | None = None
        self.next_k = 0  # the All-Reduce this node starts next
        self.last_start = -config.sync_every  # the round it started the previous one
        # Reduce messages of All-Reduce next_k that came before this node started it:
        # (kind, piece) -> (step, values), in arrival order.
        self.early: dict[tuple[str, int], tuple[int, np.ndarray]] = {}
        # Messages of a view this node has not reached yet (its sender is past a change):
        # kept, with their values copied, until it gets there.
        self.ahead: list[tuple[int, Incoming]] = []
        self.counts = {
            "allreduces": 0,
            "allreduce_latency": 0.0,
            "allreduce_early": 0,
            "allreduce_abandoned": 0,  # in flight at a view change, or stalled for `timeout`
            "allreduce_stale": 0,  # kept for a view, refused once the node got there
            "ring_size": self.ring.size,
        }

    # ---- the protocol --------------------------------------------------------------------
    def round_messages(self, round: int, params: torch.Tensor) -> list[Outgoing]:
        self._follow_view()
        if self.ring.size == 1:
            return []
        self._check_stall()
        if self.active is not None or round - self.last_start < self.config.sync_every:
            return []
        self.last_start = round
        return self._start(params)

    def on_message(self, msg: Incoming, params: torch.Tensor) -> list[Outgoing]:
        self._follow_view()
        epoch = msg.aux.get("ep", 0)
        if type(epoch) is not int or epoch < self.ring.epoch:
            raise Rejected(f"LASGD: {msg.kind} from {msg.src} of view {epoch!r} is stale")
        if epoch > self.ring.epoch:
            if len(self.ahead) >= 2 * len(self.ring.pieces) * self.ctx.num_nodes:
                raise Rejected(f"LASGD: too many messages ahead of view {self.ring.epoch}")
            self.ahead.append((epoch, replace(msg, values=msg.values.copy())))
            return []
        return self._receive(msg, params)

    def aggregate(self, round: int, params: torch.Tensor) -> dict[str, float]:
        return {**self.counts, "allreduce_in_flight": int(self.active is not None)}

    # ---- the view ------------------------------------------------------------------------
    def _follow_view(self) -> None:
        """On a new view: abandon what is in flight and restart on the ring of its members."""
        if self.config.on_absent == "error" or (self.viewed and self.ctx.view_at is None):
            return
        view = self.ctx.view()
        if self.viewed and view.epoch == self.ring.epoch:
            return
        if (view.epoch, view.members) != (self.ring.epoch, self.ring.members):
            if self.active is not None:
                self.counts["allreduce_abandoned"] += 1
            self.ring = Ring.of(view, self.ctx.node_id, self.ctx.model_size, self.config.chunks)
            self.active, self.next_k, self.early = None, 0, {}
            self.last_start = -self.config.sync_every
            self.counts["ring_size"] = self.ring.size
        self.viewed = True
        ahead, self.ahead = self.ahead, []
        for epoch, msg in ahead:
            if epoch > view.epoch:
                self.ahead.append((epoch, msg))
            elif epoch == view.epoch:
                try:  # kept as early: this node starts All-Reduce 0 of the view next
                    self._receive(msg, None)
                except Rejected:
                    self.counts["allreduce_stale"] += 1

    # ---- the state machine ---------------------------------------------------------------
    def _receive(self, msg: Incoming, params: torch.Tensor | None) -> list[Outgoing]:
        k, p, step, values = self._validate(msg)
        if self.active is not None and k == self.active.k:
            return self._advance(msg.kind, p, step, values, params)
        if k != self.next_k or (msg.kind, p) in self.early:
            raise Rejected(f"LASGD: {msg.kind} {p} of All-Reduce {k} from {msg.src} is stale")
        if msg.kind == "gather":  # needs this node's snapshot: impossible before it starts
            raise Rejected(f"LASGD: gather of All-Reduce {k} before this node started it")
        # Kept as a copy: the receive buffer is not held on to.
        self.early[(msg.kind, p)] = (step, values.copy())
        self.counts["allreduce_early"] += 1
        self._check_stall()
        return []

    def _start(self, params: torch.Tensor) -> list[Outgoing]:
        now = self.ctx.now()
        snapshot = params.detach().numpy().copy()
        self.active = AllReduce(self.next_k, snapshot, np.empty_like(snapshot), now, now)
        self.next_k += 1
        chunks, me = self.config.chunks, self.ring.me
        out = [
            self._send("reduce", p, 0, snapshot[slice(*self.ring.pieces[p])])
            for p in range(me * chunks, (me + 1) * chunks)
        ]
        early, self.early = self.early, {}
        for (kind, p), (step, values) in early.items():
            out += self._advance(kind, p, step, values, params)
        return out

    def _advance(
        self, kind: str, p: int, step: int, values: np.ndarray, params: torch.Tensor
    ) -> list[Outgoing]:
        ar, lo_hi, n = self.active, slice(*self.ring.pieces[p]), self.ring.size
        done = ar.reduced if kind == "reduce" else ar.averaged
        if p in done:
            raise Rejected(f"LASGD: {kind} {p} of All-Reduce {ar.k} arrived twice")
        done.add(p)
        ar.progressed = self.ctx.now()
        if kind == "reduce":
            partial = values + ar.snapshot[lo_hi]  # float32: one more node's share of the sum
            if step + 2 < n:
                return [self._send("reduce", p, step + 1, partial)]
            average = partial / np.float32(n)  # the one sum of this piece, divided once
            ar.average[lo_hi] = average
            ar.averaged.add(p)
            out = [self._send("gather", p, 0, average)]
        else:
            ar.average[lo_hi] = values
            forward = step + 2 < n
            out = [self._send("gather", p, step + 1, ar.average[lo_hi])] if forward else []
        if len(ar.averaged) == len(self.ring.pieces):
            self._fold(params)
        return out

    def _fold(self, params: torch.Tensor) -> None:
        """x <- avg + (x - s): the exact average plus the local steps taken meanwhile."""
        ar, self.active = self.active, None
        progress = params - torch.from_numpy(ar.snapshot)
        torch.add(torch.from_numpy(ar.average), progress, out=params)
        self.counts["allreduces"] += 1
        self.counts["allreduce_latency"] = self.ctx.now() - ar.started

    def _send(self, kind: str, p: int, step: int, values: np.ndarray) -> Outgoing:
        aux = {"ar": self.active.k, "step": step}
        if self.ring.epoch:  # the first view's messages carry no tag: a static run's bytes
            aux["ep"] = self.ring.epoch
        return Outgoing(self.ring.next, kind, values, frag=p, aux=aux)

    def _validate(self, msg: Incoming) -> tuple[int, int, int, np.ndarray]:
        """(All-Reduce, piece, step, values) of a well-formed ring message; Rejected if not."""
        k, step, p, n = msg.aux.get("ar"), msg.aux.get("step"), msg.frag, self.ring.size
        if msg.kind not in ("reduce", "gather") or msg.src != self.ring.prev or n == 1:
            raise Rejected(f"LASGD: unexpected {msg.kind} from {msg.src} at {self.ctx.node_id}")
        if type(k) is not int or type(step) is not int or not 0 <= step <= n - 2:
            raise Rejected(f"LASGD: {msg.kind} from {msg.src} has a bad aux {msg.aux}")
        if not 0 <= p < len(self.ring.pieces):
            raise Rejected(f"LASGD: {msg.kind} from {msg.src} has a bad piece {p}")
        # The ring fixes which segment travels at which step: prev - step (reduce), prev + 1
        # - step (gather), as places in the ring.
        segment = (self.ring.me - 1 - step + (msg.kind == "gather")) % n
        if p // self.config.chunks != segment:
            raise Rejected(f"LASGD: {msg.kind} step {step} from {msg.src} carries piece {p}")
        lo, hi = self.ring.pieces[p]
        values = msg.values
        if values.dtype != np.float32 or values.shape != (hi - lo,):
            raise Rejected(f"LASGD: {msg.kind} from {msg.src} is not float32 x {hi - lo}")
        return k, p, step, values

    def _check_stall(self) -> None:
        ar = self.active
        if ar is None:
            return
        stalled = self.ctx.now() - ar.progressed
        if stalled <= self.config.timeout:
            return
        if self.config.on_absent == "reform":  # the next one starts at the next boundary
            self.active = None
            self.counts["allreduce_abandoned"] += 1
            return
        every = set(range(len(self.ring.pieces)))
        chunks, me = self.config.chunks, self.ring.me
        own = set(range(me * chunks, (me + 1) * chunks))
        missing_reduce = sorted(every - own - ar.reduced)
        missing_gather = sorted(every - ar.averaged)
        raise RuntimeError(
            f"LASGD: All-Reduce {ar.k} stalled for {stalled:.1f} s waiting for node "
            f"{self.ring.prev} (node {self.ctx.node_id} still lacks reduce pieces "
            f"{missing_reduce} and gather pieces {missing_gather}; the dead member may be "
            f"further up the ring); a ring member is gone: timeout ends the run, the ring is "
            f"not re-formed (algorithm.on_absent=error; reform goes on without it)"
        )


__all__ = ["LASGD", "LASGDConfig", "Ring", "pieces", "split"]
