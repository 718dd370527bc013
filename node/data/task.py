"""What every data set provides (one small protocol), and the pieces classification sets share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from node.config import DataSpec, number, require

# Evaluates one node's model: {"accuracy": .., "loss": .., and any metric the task adds}.
Tester = Callable[[torch.nn.Module, int], dict[str, float]]


class DataError(RuntimeError):
    """The data set is not there and cannot be fetched: names the path and how to provide it."""


class Task(Protocol):
    """One data set: prepared once by the launcher, sharded per node, tested off the hot path."""

    name: str
    partitions: tuple[str, ...]
    models: tuple[str, ...]  # the models built for it
    config_keys: frozenset[str]  # its keys beyond name, partition and partition_seed
    metric: str  # what a run on it is judged on: "accuracy", or "RMSE" (lower is better)

    def spec_values(self, ds: dict, num_nodes: int) -> dict:
        """Its own keys of the `dataset` section, checked (ConfigError names the key and the
        fix), as DataSpec fields; the launcher calls it before any process starts."""

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


def shard_values(ds: dict) -> dict:
    """shards_per_node, and alpha: required by partition=dirichlet, checked whenever given."""
    values = {"shards_per_node": number(ds, "shards_per_node", "dataset.", kind=int, low=1)}
    if ds.get("alpha") is None and ds.get("partition") != "dirichlet":
        return values
    fix = "use e.g. dataset.alpha=0.1 (Dirichlet concentration; smaller is more skewed)"
    alpha = number(ds, "alpha", "dataset.", fix=fix)
    require(alpha > 0, "dataset.alpha", f"{alpha} is not positive", fix)
    return values | {"alpha": alpha}


def download_value(ds: dict) -> dict:
    download = ds.get("download", True)
    require(
        isinstance(download, bool),
        "dataset.download",
        f"{download!r} is not a boolean",
        "true (fetch missing files when online) or false",
    )
    return {"download": download}
