"""What a node leaves for the evaluators: at every evaluation instant, the model it settled at
its last aggregation (as DL papers and the artifact test post-aggregation models: mid-round ones
have drifted locally), and the checkpoint a crash will not take. A collaborator of `Node`."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from node.files import save_npy_atomic
from node.spec import NodeSpec


class Snapshots:
    """Owns the settled model and the next evaluation instant; writes `snapshots/` files."""

    def __init__(self, spec: NodeSpec, checkpoint: Path | None):
        self.node_id, self.interval = spec.node_id, spec.eval_interval
        self.folder = Path(spec.run_dir) / "snapshots"
        self.checkpoint = checkpoint  # None: none kept
        self.next = spec.eval_interval
        self.settled: torch.Tensor | None = None

    def begin(self, flat: torch.Tensor) -> None:
        """The run starts from `flat`: the first instant is one interval in."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settled, self.next = flat.clone(), self.interval

    def settle(self, flat: torch.Tensor) -> None:
        """An aggregation ended: `flat` is what the instants from now on see."""
        self.settled.copy_(flat)

    def resume(self, t: float, flat: torch.Tensor) -> None:
        """Back at `t` with `flat`: the instants it was away are not its to write; `t` is if it
        is one."""
        self.settled.copy_(flat)
        self.next = math.ceil(t / self.interval - 1e-9) * self.interval
        self.until(t)

    def until(self, t: float) -> None:
        """Every evaluation instant up to `t`: the model settled at the last aggregation."""
        while t >= self.next - 1e-9:
            self.write(self.next)
            self.next += self.interval

    def finish(self, duration: float) -> None:
        """The run's last instant, if the grid did not fall on it."""
        if self.next - self.interval < duration - 1e-9:
            self.write(duration)

    def write(self, t: float) -> None:
        name = f"n{self.node_id:03d}_t{round(t * 1000):09d}.npy"
        save_npy_atomic(self.folder / name, self.settled.numpy())
        if self.checkpoint is not None:  # what a crash will not take: the model settled by t
            save_npy_atomic(self.checkpoint, self.settled.numpy())
