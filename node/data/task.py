"""What every data set provides (one small protocol), and the pieces classification sets share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F

from node.checks import REQUIRED, at_least, hinted, require
from node.spec import DataSpec

ALPHA_FIX = "use e.g. dataset.alpha=0.1 (Dirichlet concentration; smaller is more skewed)"

# Evaluates one node's model: {"accuracy": .., "loss": .., and any metric the task adds}.
Tester = Callable[[torch.nn.Module, int], dict[str, float]]


class DataError(RuntimeError):
    """The data set is not there and cannot be fetched: names the path and how to provide it."""


class Task(Protocol):
    """One data set: prepared once by the launcher, sharded per node, tested off the hot path."""

    name: str
    partitions: tuple[str, ...]
    models: tuple[str, ...]  # the models built for it
    config_class: type[DataConfig]  # its `dataset` section, typed and checked
    metric: str  # what a run on it is judged on: "accuracy", or "RMSE" (lower is better)

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


@dataclass
class DataConfig:
    """The keys every data set's section has; each set's config class adds its own, checks
    them in `__post_init__` and against the run's size in `check` (the launcher validates the
    section into it as a structured config, so another set's key is refused by name)."""

    name: str = REQUIRED
    partition: str = REQUIRED
    partition_seed: int = hinted("a seed >= 0, e.g. dataset.partition_seed=1234")
    partitions: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        require(
            self.partition in self.partitions,
            "dataset.partition",
            f"{self.partition!r} is not a partitioner of {self.name}",
            f"use one of {list(self.partitions)}",
        )
        at_least(self.partition_seed, 0, "dataset.partition_seed")

    def check(self, num_nodes: int) -> None:
        """Checks that need the run's size."""


@dataclass
class Sharded(DataConfig):
    """Label-based partitions: kshard's shards per node, dirichlet's concentration."""

    shards_per_node: int = hinted("e.g. dataset.shards_per_node=5")
    alpha: float | None = hinted(ALPHA_FIX, None)

    def __post_init__(self):
        super().__post_init__()
        at_least(self.shards_per_node, 1, "dataset.shards_per_node")
        if self.alpha is not None or self.partition == "dirichlet":
            require(self.alpha is not None, "dataset.alpha", "missing", ALPHA_FIX)
            require(self.alpha > 0, "dataset.alpha", f"{self.alpha} is not positive", ALPHA_FIX)


@dataclass
class Downloaded(DataConfig):
    """Files under `root` (the run's data_root when unset), fetched when missing if allowed."""

    root: str | None = None
    download: bool = hinted("true (fetch missing files when online) or false", True)
