"""Tests for MNIST-1D caching, the iid/kshard/dirichlet partitioners and per-node shard loading."""

from __future__ import annotations

import mnist1d.data
import numpy as np
import pytest
import torch

from node.data.mnist1d import load_shard, load_test_set, mnist1d_arrays
from node.data.partition import (
    dirichlet_partition,
    iid_partition,
    kshard_partition,
    partition_labels,
    user_blocks,
)

N = 2000  # small enough to generate in about a second


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist1d")
    mnist1d_arrays(root, num_samples=N)
    return root


@pytest.fixture(scope="module")
def labels(data_root):
    return mnist1d_arrays(data_root, num_samples=N)["y"]


def _assert_exact_cover(parts, n):
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))


def test_mnist1d_arrays_shapes_and_dtypes(data_root):
    a = mnist1d_arrays(data_root, num_samples=N)
    assert a["x"].shape == (1600, 40) and a["x"].dtype == np.float32
    assert a["x_test"].shape == (400, 40) and a["x_test"].dtype == np.float32
    assert a["y"].dtype == np.int64 and a["y_test"].dtype == np.int64
    assert set(np.unique(a["y"])) == set(range(10))


def test_mnist1d_arrays_caches_and_reloads(tmp_path, monkeypatch):
    first = mnist1d_arrays(tmp_path, num_samples=N, seed=7)
    assert (tmp_path / f"mnist1d_n{N}_s7_split0.8.npz").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [f"mnist1d_n{N}_s7_split0.8.npz"]

    def boom(*args, **kwargs):
        raise AssertionError("make_dataset called although the cache exists")

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
    second = mnist1d_arrays(tmp_path, num_samples=N, seed=7)
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].dtype == second[key].dtype
        assert np.array_equal(first[key], second[key])


def test_mnist1d_arrays_leaves_global_rng_alone(tmp_path):
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    mnist1d_arrays(tmp_path, num_samples=N)
    assert np.array_equal(np.random.random(3), expected)


def test_iid_partition_sizes_cover_and_determinism():
    parts = iid_partition(1003, 10, seed=1)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sizes[:3] == [101, 101, 101]  # the remainder goes to the first nodes
    _assert_exact_cover(parts, 1003)
    again = iid_partition(1003, 10, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = iid_partition(1003, 10, seed=2)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_kshard_covers_every_index_once(labels):
    parts = kshard_partition(labels, 60, shards_per_node=5, seed=3)
    assert len(parts) == 60
    _assert_exact_cover(parts, len(labels))


def test_kshard_shard_sizes():
    labels = np.repeat(np.arange(10), 101)  # 1010 samples, 50 shards of 20, last one of 30
    sizes = sorted(len(p) for p in kshard_partition(labels, 10, shards_per_node=5, seed=0))
    assert sizes == [100] * 9 + [110]


def test_kshard_deterministic_and_seed_dependent(labels):
    a = kshard_partition(labels, 60, shards_per_node=5, seed=3)
    b = kshard_partition(labels, 60, shards_per_node=5, seed=3)
    c = kshard_partition(labels, 60, shards_per_node=5, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_kshard_is_non_iid(labels):
    kshard = kshard_partition(labels, 60, shards_per_node=5, seed=3)
    iid = iid_partition(len(labels), 60, seed=3)
    kshard_classes = np.mean([len(np.unique(labels[p])) for p in kshard])
    iid_classes = np.mean([len(np.unique(labels[p])) for p in iid])
    assert kshard_classes <= 5.0
    assert iid_classes >= 8.0


def test_kshard_too_few_samples():
    with pytest.raises(ValueError, match="at least"):
        kshard_partition(np.zeros(10, dtype=np.int64), 3, shards_per_node=5)


def test_dirichlet_covers_every_index_once_and_is_deterministic(labels):
    a = dirichlet_partition(labels, 60, alpha=0.1, seed=3)
    assert len(a) == 60
    _assert_exact_cover(a, len(labels))
    b = dirichlet_partition(labels, 60, alpha=0.1, seed=3)
    c = dirichlet_partition(labels, 60, alpha=0.1, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0])
def test_dirichlet_groups_of_ten_and_the_minimum_size(labels, alpha):
    # 25 nodes: groups of 10, 10 and 5 nodes; the first two get int(10/25 * 1600) = 640
    # samples each, the last the remaining 320. Every node holds >= 50% of its group's mean.
    parts = dirichlet_partition(labels, 25, alpha=alpha, seed=0)
    sizes = [len(p) for p in parts]
    assert [sum(sizes[:10]), sum(sizes[10:20]), sum(sizes[20:])] == [640, 640, 320]
    assert min(sizes[:20]) >= 32 and min(sizes[20:]) >= 32
    _assert_exact_cover(parts, len(labels))


def test_lower_dirichlet_alpha_is_more_skewed(labels):
    def classes(alpha):
        parts = dirichlet_partition(labels, 20, alpha=alpha, seed=1)
        return np.mean([len(np.unique(labels[p])) for p in parts])

    few, some, all_ = classes(0.01), classes(0.1), classes(10.0)
    assert few < some < all_ and few <= 3.0 and all_ >= 9.0


def test_dirichlet_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_partition(np.zeros(10, dtype=np.int64), 2, alpha=0.0)


@pytest.mark.parametrize("partition", ["iid", "kshard", "dirichlet"])
def test_load_shard_returns_disjoint_node_tensors(data_root, partition):
    shards = [load_shard(data_root, i, 8, partition, seed=5, num_samples=N) for i in range(8)]
    x0, y0 = shards[0]
    assert x0.dtype == torch.float32 and x0.ndim == 3 and x0.shape[1:] == (1, 40)
    assert y0.dtype == torch.int64 and len(y0) == len(x0)
    assert sum(len(y) for _, y in shards) == 1600
    full = mnist1d_arrays(data_root, num_samples=N)
    xs = torch.cat([x for x, _ in shards]).squeeze(1).numpy()
    ys = torch.cat([y for _, y in shards]).numpy()
    # Every training sample lands on exactly one node.
    order = np.lexsort(np.column_stack([xs, ys]).T)
    ref = np.lexsort(np.column_stack([full["x"], full["y"]]).T)
    assert np.array_equal(xs[order], full["x"][ref])
    assert np.array_equal(ys[order], full["y"][ref])


def test_load_shard_rejects_bad_arguments(data_root):
    with pytest.raises(ValueError, match="iid, kshard"):
        load_shard(data_root, 0, 4, "dirichlet-ish", seed=0, num_samples=N)
    with pytest.raises(ValueError, match="out of range"):
        load_shard(data_root, 4, 4, "iid", seed=0, num_samples=N)


def test_load_test_set(data_root):
    x, y = load_test_set(data_root, num_samples=N)
    assert x.shape == (400, 1, 40) and x.dtype == torch.float32
    assert y.shape == (400,) and y.dtype == torch.int64


def test_partition_labels_dispatches_by_name(labels):
    by_name = partition_labels(labels, 6, "kshard", seed=2, shards_per_node=5)
    direct = kshard_partition(labels, 6, shards_per_node=5, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(by_name, direct, strict=True))
    with pytest.raises(ValueError, match="unknown partition"):
        partition_labels(labels, 6, "by_user", seed=2)


def test_user_blocks_are_contiguous_like_the_artifact():
    blocks = user_blocks(610, 60)
    sizes = [len(b) for b in blocks]
    assert sizes == [11] * 10 + [10] * 50
    assert np.array_equal(np.concatenate(blocks), np.arange(610))
    with pytest.raises(ValueError, match="cannot be split"):
        user_blocks(5, 6)
