"""What every data set provides (one small protocol), and the pieces classification sets share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from node.config import DataSpec

# Evaluates one node's model: {"accuracy": .., "loss": .., and any metric the task adds}.
Tester = Callable[[torch.nn.Module, int], dict[str, float]]


class DataError(RuntimeError):
    """The data set is not there and cannot be fetched: names the path and how to provide it."""


class Task(Protocol):
    """One data set: prepared once by the launcher, sharded per node, tested off the hot path."""

    name: str
    partitions: tuple[str, ...]

    def prepare(self, spec: DataSpec) -> None:
        """Before any process starts: download if allowed, build caches, or raise DataError."""

    def model_dims(self, spec: DataSpec) -> dict[str, int]:
        """Sizes the model needs from the data (e.g. users and items); {} for fixed inputs."""

    def train_shard(
        self, spec: DataSpec, node_id: int, num_nodes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This node's training samples only: (inputs, targets)."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of one mini-batch."""

    def tester(self, spec: DataSpec, num_nodes: int) -> Tester:
        """A function testing a node's model on its test set."""


def classification_tester(
    x: torch.Tensor,
    y: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch: int = 256,  # GN-LeNet activations of 256 images: ~35 MB per evaluator
) -> Tester:
    """Accuracy and mean cross-entropy on one shared test set; `transform` maps each stored
    batch to model inputs (so a test set can stay uint8 in memory)."""

    def test(model: torch.nn.Module, node_id: int) -> dict[str, float]:
        model.eval()
        correct, loss = 0, 0.0
        with torch.no_grad():
            for start in range(0, len(y), batch):
                inputs = x[start : start + batch]
                logits = model(transform(inputs) if transform else inputs)
                target = y[start : start + batch]
                loss += F.cross_entropy(logits, target, reduction="sum").item()
                correct += (logits.argmax(1) == target).sum().item()
        model.train()
        return {"accuracy": correct / len(y), "loss": loss / len(y)}

    return test
