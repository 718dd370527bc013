"""DivShare's tensor logic: the fragment partition, recipients, dedup and per-coordinate mean."""

import random

import numpy as np
import pytest
import torch

from node.algorithms.base import Incoming, NodeContext, Rejected
from node.algorithms.divshare import (
    DivShare,
    DivShareConfig,
    fragment_indices,
    per_coordinate_mean,
)

LAYERS = (7, 20, 3)


def _algo(node_id=0, num_nodes=8, fraction=0.25, degree=3, seed=5):
    config = DivShareConfig(
        name="divshare", lr=0.05, batch_size=8, local_steps=4, fraction=fraction, degree=degree
    )
    ctx = NodeContext(
        node_id=node_id,
        num_nodes=num_nodes,
        layer_sizes=LAYERS,
        rng=random.Random(node_id),
        partition_seed=seed,
    )
    return DivShare(config, ctx)


def test_partition_covers_every_coordinate_once_and_splits_every_layer():
    parts = fragment_indices(LAYERS, 4, seed=1234)
    allidx = torch.cat(parts).sort().values
    assert torch.equal(allidx, torch.arange(sum(LAYERS)))
    bounds = np.cumsum((0,) + LAYERS)
    for f, part in enumerate(parts):
        per_layer = [
            int(((part >= lo) & (part < hi)).sum())
            for lo, hi in zip(bounds, bounds[1:], strict=False)
        ]
        # numel // 4 of each layer; the last fragment takes each layer's remainder
        expected = [n // 4 if f < 3 else n - 3 * (n // 4) for n in LAYERS]
        assert per_layer == expected


def test_partition_is_the_same_on_every_node_and_depends_on_the_seed():
    a = fragment_indices(LAYERS, 4, seed=1234)
    b = fragment_indices(LAYERS, 4, seed=1234)
    c = fragment_indices(LAYERS, 4, seed=99)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    assert [len(p) for p in a] == [len(p) for p in c]


def test_number_of_fragments_is_floor_of_one_over_omega():
    assert _algo(fraction=0.1).num_fragments == 10
    assert _algo(fraction=0.3).num_fragments == 3
    assert _algo(fraction=1.0).num_fragments == 1


def test_per_coordinate_mean_with_overlapping_fragments_by_hand():
    own = torch.tensor([1.0, 2.0, 3.0, 4.0])
    received = [
        (torch.tensor([0, 1]), torch.tensor([3.0, 4.0])),  # sender A, fragment over 0,1
        (torch.tensor([1, 2]), torch.tensor([8.0, 9.0])),  # sender B, fragment over 1,2
        (torch.tensor([1]), torch.tensor([6.0])),  # sender C over 1
    ]
    out = per_coordinate_mean(own, received)
    # coord 0: (1+3)/2; coord 1: (2+4+8+6)/4; coord 2: (3+9)/2; coord 3 untouched
    assert torch.allclose(out, torch.tensor([2.0, 5.0, 6.0, 4.0]))


def test_round_messages_send_each_fragment_to_j_distinct_peers_shuffled():
    algo = _algo(num_nodes=8, fraction=0.25, degree=3)
    params = torch.arange(sum(LAYERS), dtype=torch.float32)
    out = algo.round_messages(0, params)
    assert len(out) == 4 * 3
    for frag in range(4):
        dsts = [m.dst for m in out if m.frag == frag]
        assert len(set(dsts)) == 3 and 0 not in dsts
        values = next(m.values for m in out if m.frag == frag)
        np.testing.assert_array_equal(values, params[algo.indices[frag]].numpy())
    assert [m.frag for m in out] != sorted(m.frag for m in out)  # shuffled send order
    params += 100  # later local steps must not alter what is queued
    assert out[0].values.max() < 100


def _fragment(algo, src, frag, round_, value):
    n = len(algo.indices[frag])
    return Incoming("fragment", src, round_, np.full(n, value, dtype=np.float32), frag)


def test_only_the_latest_copy_per_sender_and_fragment_is_merged():
    algo = _algo(fraction=0.5)
    params = torch.zeros(sum(LAYERS))
    algo.on_message(_fragment(algo, 1, 0, round_=2, value=10.0), params)
    algo.on_message(_fragment(algo, 1, 0, round_=1, value=99.0), params)  # older: ignored
    algo.on_message(_fragment(algo, 1, 0, round_=3, value=4.0), params)  # newer: replaces
    algo.on_message(_fragment(algo, 2, 0, round_=3, value=2.0), params)
    stats = algo.aggregate(3, params)
    assert stats["fragments_merged"] == 2
    idx0, idx1 = algo.indices
    assert torch.allclose(params[idx0], torch.full((len(idx0),), 2.0))  # (0 + 4 + 2) / 3
    assert torch.all(params[idx1] == 0)
    assert algo.aggregate(4, params)["fragments_merged"] == 0  # consumed


@pytest.mark.parametrize(
    "bad",
    [
        lambda a: Incoming("fragment", 1, 0, np.zeros(3, dtype=np.float32), 7),
        lambda a: Incoming("fragment", 1, 0, np.zeros(2, dtype=np.float32), 0),
        lambda a: Incoming("fragment", 1, 0, np.zeros(len(a.indices[0])), 0),
        lambda a: Incoming("model", 1, 0, np.zeros(len(a.indices[0]), dtype=np.float32), 0),
    ],
)
def test_a_fragment_that_does_not_match_the_partition_is_rejected(bad):
    algo = _algo(fraction=0.5)
    with pytest.raises(Rejected):
        algo.on_message(bad(algo), torch.zeros(sum(LAYERS)))
