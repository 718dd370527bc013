"""Partitioners: which training samples (or users) each node owns, from labels and a seed."""

from __future__ import annotations

import math

import numpy as np

PARTITIONS = ("iid", "kshard", "dirichlet")
AUXILIARY_WORKERS = 10  # RelaySGD's num_auxiliary_workers: Dirichlet groups of 10 nodes


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


def partition_labels(
    labels: np.ndarray,
    num_nodes: int,
    partition: str,
    seed: int,
    shards_per_node: int = 5,
    alpha: float = 0.1,
) -> list[np.ndarray]:
    """Every node's sample indices under the named partitioner."""
    if partition == "iid":
        return iid_partition(len(labels), num_nodes, seed)
    if partition == "dirichlet":
        return dirichlet_partition(labels, num_nodes, alpha, seed)
    if partition == "kshard":
        return kshard_partition(labels, num_nodes, shards_per_node, seed)
    raise ValueError(f"unknown partition {partition!r}; valid: {', '.join(PARTITIONS)}")


def user_blocks(num_users: int, num_nodes: int) -> list[np.ndarray]:
    """`by_user`: contiguous blocks of user indices, sizes differing by at most one (the first
    nodes take one more), as the artifact's MovieLens split: 610 users on 60 nodes gives 10
    nodes 11 users and 50 nodes 10."""
    if not 1 <= num_nodes <= num_users:
        raise ValueError(f"{num_users} users cannot be split over {num_nodes} nodes")
    return list(np.array_split(np.arange(num_users), num_nodes))
