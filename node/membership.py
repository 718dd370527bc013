"""A node under the run's scenario: the periods it is up, what it comes back with (the model
it kept, the run's initial one, or its checkpoint in a new process after a crash), and whom it
can count on at an instant (the scenario's reachability and the deaths the launcher announced)."""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch

from node.algorithms import View
from node.spec import NodeSpec
from transport import Reachability

INITIAL = "initial"  # joins with the run's initial model


class Membership:
    """Pure but for the checkpoint file: read once the node has set up."""

    def __init__(self, spec: NodeSpec, run_dir: Path):
        self.spec = spec
        joins = (a for a in spec.scenario if a.kind == "join" and a.node == spec.node_id)
        self.join_models = {a.t: a.values.get("model", "kept") for a in joins}
        self.checkpoint = Path(run_dir) / "checkpoints" / f"n{spec.node_id:03d}.npy"
        if spec.checkpoint:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        self.reach = Reachability(spec.scenario)
        # (node, emulated t) of each unplanned death, appended by the control thread: replaced
        # whole, never mutated, so the training thread reads a consistent tuple.
        self.departed: tuple[tuple[int, float], ...] = ()
        self._views: dict[tuple[int, int], View] = {}
        self.everyone = View(0, tuple(range(spec.num_nodes)))  # a static run's only view

    def depart(self, node: int, t: float) -> None:
        """The launcher saw `node` die (unplanned) at emulated `t`: out of every view from t."""
        if all(n != node for n, _ in self.departed):
            self.departed = (*self.departed, (node, t))

    def view(self, t: float) -> View:
        """Whom this node can reach at `t`: the nodes up, on no cut link and on its side of any
        partition, that did not die. Reachability is an equivalence at an instant (or a node
        alone, if its link is cut), so every member computes the same members and epoch."""
        departed = self.departed
        epoch = bisect.bisect_right(self.reach.changes, t) + sum(at <= t for _, at in departed)
        key = (epoch, len(departed))
        if key not in self._views:
            me, gone = self.spec.node_id, {n for n, at in departed if at <= t}
            members = tuple(
                n
                for n in range(self.spec.num_nodes)
                if n == me or (n not in gone and self.reach.lost(me, n, t) is None)
            )
            self._views[key] = View(epoch, members)
        return self._views[key]

    @property
    def joins_with_initial(self) -> bool:
        return "initial" in self.join_models.values()

    def periods(self) -> list[tuple[float, float]]:
        """The intervals of the run this node is up (a new process: from its `start_at`)."""
        spec = self.spec
        periods = Reachability(spec.scenario).up_periods(spec.node_id, spec.duration)
        if spec.start_at > 0.0:
            periods = [(max(a, spec.start_at), b) for a, b in periods if b > spec.start_at]
        return periods

    def join_model(self, t: float) -> str | torch.Tensor | None:
        """What the node joins with at `t`: "initial" (the run's initial model, its optimizer
        state dropped), its checkpoint (a new process after a crash, kept), or None (the model
        it has, kept). The node applies it: its model is its own."""
        if self.join_models.get(t) == INITIAL:
            return INITIAL
        if t == self.spec.start_at and self.checkpoint.is_file():
            return torch.from_numpy(np.load(self.checkpoint, allow_pickle=False))
        return None
