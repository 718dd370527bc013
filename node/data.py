"""MNIST-1D generation with an on-disk cache, and the per-node partitioners."""

from __future__ import annotations

import math
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

PARTITIONS = ("iid", "kshard", "dirichlet")
AUXILIARY_WORKERS = 10  # RelaySGD's num_auxiliary_workers: Dirichlet groups of 10 nodes


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
    path.parent.mkdir(parents=True, exist_ok=True)
    # Many node processes may race to create the cache: each writes its own temp file and the
    # rename is atomic, so a reader never sees a half-written npz.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return arrays


def iid_partition(num_samples: int, num_nodes: int, seed: int) -> list[np.ndarray]:
    """Shuffle all indices and split them into num_nodes parts whose sizes differ by at most 1."""
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    perm = np.random.default_rng(seed).permutation(num_samples)
    return list(np.array_split(perm, num_nodes))


def kshard_partition(
    labels: np.ndarray, num_nodes: int, shards_per_node: int = 5, seed: int = 0
) -> list[np.ndarray]:
    """Split indices the way the DivShare artifact / decentralizepy's KShardDataPartitioner does.

    Indices are sorted by class (stable), the sorted list is cut into num_nodes * shards_per_node
    contiguous shards of equal size (the last shard takes the remainder), the shards are shuffled
    with the seed and each node receives shards_per_node of them. This is the "class-sorted,
    5 contiguous shards per node" scheme: most shards hold only 1-2 classes, so nodes are non-IID.
    """
    labels = np.asarray(labels)
    num_shards = num_nodes * shards_per_node
    if num_nodes < 1 or shards_per_node < 1:
        raise ValueError(
            f"num_nodes and shards_per_node must be >= 1, got {num_nodes} and {shards_per_node}"
        )
    if len(labels) < num_shards:
        raise ValueError(
            f"kshard needs at least num_nodes * shards_per_node = {num_shards} samples, "
            f"got {len(labels)}"
        )
    order = np.argsort(labels, kind="stable")
    size = len(labels) // num_shards
    bounds = [i * size for i in range(num_shards)] + [len(labels)]
    shards = [order[bounds[i] : bounds[i + 1]] for i in range(num_shards)]
    perm = np.random.default_rng(seed).permutation(num_shards)
    return [
        np.concatenate([shards[s] for s in perm[n * shards_per_node : (n + 1) * shards_per_node]])
        for n in range(num_nodes)
    ]


def dirichlet_partition(
    labels: np.ndarray, num_nodes: int, alpha: float, seed: int = 0, max_draws: int = 10_000
) -> list[np.ndarray]:
    """Split indices as RelaySGD's `distribute_data_dirichlet` does (epfml/relaysgd
    tasks/utils/non_iid_dirichlet.py, adapted from Tao Lin's partition_data.py), step for step
    on one np.random.RandomState(seed), so the same labels and seed give the same split.

    The (index, label) pairs are shuffled and cut into contiguous groups, one per 10 nodes
    (the last group takes the remaining nodes and samples). Within a group of g nodes, for
    each class in turn: proportions ~ Dir(alpha) over the g nodes, zeroed for nodes already
    holding at least the group's average (balanced), renormalised, and the class's indices
    split accordingly. The whole group is redrawn until every node holds at least 50% of the
    average. Lower alpha: fewer classes per node. Differences from the reference: the
    group is always drawn at least once (its loop never runs when 50% of the average rounds
    down to 0), and after `max_draws` failed draws a ValueError is raised instead of looping.
    """
    labels = np.asarray(labels)
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = np.random.RandomState(seed)
    num_indices, classes = len(labels), np.unique(labels)
    pairs = np.column_stack([np.arange(num_indices), labels]).astype(np.int64)
    rng.shuffle(pairs)
    num_groups = math.ceil(num_nodes / AUXILIARY_WORKERS)
    step = int(AUXILIARY_WORKERS / num_nodes * num_indices)
    groups = [
        pairs[g * step : (num_indices if g == num_groups - 1 else (g + 1) * step)]
        for g in range(num_groups)
    ]
    parts: list[np.ndarray] = []
    left = num_nodes
    for group in groups:
        size, nodes = len(group), min(AUXILIARY_WORKERS, left)
        left -= AUXILIARY_WORKERS
        for _ in range(max_draws):
            batch: list[list[int]] = [[] for _ in range(nodes)]
            for label in classes:
                idx = group[group[:, 1] == label, 0]
                proportions = rng.dirichlet(np.repeat(alpha, nodes))
                if not len(idx):  # drawn all the same, to stay in step with the reference
                    continue
                proportions = np.array(
                    [p * (len(b) < size / nodes) for p, b in zip(proportions, batch, strict=True)]
                )
                proportions = proportions / proportions.sum()
                cuts = (np.cumsum(proportions) * len(idx)).astype(int)[:-1]
                batch = [b + i.tolist() for b, i in zip(batch, np.split(idx, cuts), strict=True)]
            if min(len(b) for b in batch) >= int(0.50 * size / nodes):
                break
        else:
            raise ValueError(
                f"dirichlet: no split of {size} samples over {nodes} nodes with alpha={alpha} "
                f"gave every node 50% of the average in {max_draws} draws"
            )
        parts += [np.asarray(b, dtype=np.int64) for b in batch]
    return parts


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
    if partition == "iid":
        parts = iid_partition(len(y), num_nodes, seed)
    elif partition == "dirichlet":
        parts = dirichlet_partition(y, num_nodes, alpha, seed)
    else:
        parts = kshard_partition(y, num_nodes, shards_per_node, seed)
    idx = parts[node_id]
    return _to_tensors(x[idx], y[idx])


def load_test_set(
    root: str | Path, num_samples: int = 20000, data_seed: int = 42
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the held-out test split as (x float32 [n, 1, 40], y int64 [n])."""
    arrays = mnist1d_arrays(root, num_samples=num_samples, seed=data_seed)
    return _to_tensors(arrays["x_test"], arrays["y_test"])
