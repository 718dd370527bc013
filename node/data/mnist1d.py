"""MNIST-1D, the embedded default: regenerated offline from its seed and cached under the root."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from node.checks import at_least, hinted, require
from node.data.partition import PARTITIONS, partition_labels
from node.data.task import Sharded, Tester, classification_tester
from node.files import write_atomic
from node.spec import DataSpec


def _cache_path(root: str | Path, num_samples: int, seed: int, train_split: float) -> Path:
    return Path(root) / f"mnist1d_n{num_samples}_s{seed}_split{train_split}.npz"


def _generate(num_samples: int, seed: int, train_split: float) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    args.train_split = train_split
    # make_dataset reseeds the global numpy and stdlib RNGs; callers must not see that.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        ds = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.ascontiguousarray(ds["x"], dtype=np.float32),
        "y": np.ascontiguousarray(ds["y"], dtype=np.int64),
        "x_test": np.ascontiguousarray(ds["x_test"], dtype=np.float32),
        "y_test": np.ascontiguousarray(ds["y_test"], dtype=np.int64),
    }


def mnist1d_arrays(
    root: str | Path, num_samples: int = 20000, seed: int = 42, train_split: float = 0.8
) -> dict[str, np.ndarray]:
    """Return MNIST-1D as arrays x, y, x_test, y_test, generated offline and cached under root."""
    path = _cache_path(root, num_samples, seed, train_split)
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    arrays = _generate(num_samples, seed, train_split)
    write_atomic(path, lambda f: np.savez(f, **arrays))
    return arrays


def _to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    # Conv1d wants a channel axis; the MLP flattens it away again.
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
    return xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def load_shard(
    root: str | Path,
    node_id: int,
    num_nodes: int,
    partition: str,
    seed: int,
    shards_per_node: int = 5,
    num_samples: int = 20000,
    data_seed: int = 42,
    alpha: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return this node's training data as (x float32 [n, 1, 40], y int64 [n])."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; valid: {', '.join(PARTITIONS)}")
    if not 0 <= node_id < num_nodes:
        raise ValueError(f"node_id {node_id} out of range for {num_nodes} nodes")
    arrays = mnist1d_arrays(root, num_samples=num_samples, seed=data_seed)
    x, y = arrays["x"], arrays["y"]
    idx = partition_labels(y, num_nodes, partition, seed, shards_per_node, alpha)[node_id]
    return _to_tensors(x[idx], y[idx])


def load_test_set(
    root: str | Path, num_samples: int = 20000, data_seed: int = 42
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the held-out test split as (x float32 [n, 1, 40], y int64 [n])."""
    arrays = mnist1d_arrays(root, num_samples=num_samples, seed=data_seed)
    return _to_tensors(arrays["x_test"], arrays["y_test"])


@dataclass
class MNIST1DConfig(Sharded):
    """The `dataset` section of mnist1d: generated offline from its seed."""

    num_samples: int = hinted("e.g. dataset.num_samples=20000")
    data_seed: int = hinted("e.g. dataset.data_seed=42")
    partitions: ClassVar[tuple[str, ...]] = PARTITIONS

    def __post_init__(self):
        super().__post_init__()
        at_least(self.num_samples, 100, "dataset.num_samples")
        at_least(self.data_seed, 0, "dataset.data_seed")

    def check(self, num_nodes: int) -> None:
        if self.partition == "kshard":
            shards = num_nodes * self.shards_per_node
            train = int(self.num_samples * 0.8)
            require(
                train >= shards,
                "dataset.num_samples",
                f"{train} training samples cannot fill {shards} shards",
                "raise dataset.num_samples or lower dataset.shards_per_node",
            )


class MNIST1D:
    """The `mnist1d` task: 10-class classification of 40-sample signals."""

    name = "mnist1d"
    partitions = PARTITIONS
    models = ("cnn1d", "mlp")
    config_class = MNIST1DConfig
    metric = "accuracy"

    def prepare(self, spec: DataSpec) -> None:
        # Generated once by the launcher, so 60 nodes read one cached file.
        mnist1d_arrays(spec.root, num_samples=spec.num_samples, seed=spec.data_seed)

    def model_dims(self, spec: DataSpec) -> dict[str, int]:
        return {}

    def train_shard(
        self, spec: DataSpec, node_id: int, num_nodes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return load_shard(
            spec.root,
            node_id,
            num_nodes,
            spec.partition,
            spec.partition_seed,
            spec.shards_per_node,
            spec.num_samples,
            spec.data_seed,
            spec.alpha,
        )

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def tester(self, spec: DataSpec, num_nodes: int) -> Tester:
        return classification_tester(*load_test_set(spec.root, spec.num_samples, spec.data_seed))
