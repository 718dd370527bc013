"""CHOCO-SGD's tensor logic on hand-run exchanges: exact gossip with the full codec, public
copies that stay every neighbour's copy with a compressing one (late messages included)."""

from __future__ import annotations

import random

import pytest
import torch

from node.algorithms.base import Incoming, NodeContext, Outgoing
from node.algorithms.choco import Choco, ChocoConfig
from node.algorithms.dpsgd import metropolis_hastings, neighbours
from node.sharing import SharingConfig
from node.sharing.quantize import QuantizeConfig
from node.sharing.topk import TopKConfig

SIZE = 40
COMMON = {"lr": 0.05, "batch_size": 8, "local_steps": 4}


def nodes(n: int, sharing: SharingConfig, gamma: float, topology: str = "ring"):
    config = ChocoConfig(name="choco", topology=topology, gamma=gamma, **COMMON)
    made = []
    for i in range(n):
        ctx = NodeContext(
            node_id=i,
            num_nodes=n,
            layer_sizes=(SIZE,),
            rng=random.Random(i),
            partition_seed=1,
            sharing=sharing,
        )
        made.append(Choco(config, ctx))
    x0 = torch.linspace(-1, 1, SIZE)
    for algo in made:
        algo.init(x0)
    return made, x0


def deliver(out: Outgoing, src: int, round: int) -> Incoming:
    return Incoming(out.kind, src, round, out.values.copy(), 0, dict(out.aux), 0.0, out.extra)


def exchange(algos, params, round, hold=()):
    """One synchronous round: everyone sends, everything but `hold` (src, dst) is delivered,
    everyone aggregates; returns what was held back."""
    held = []
    outs = {i: a.round_messages(round, params[i]) for i, a in enumerate(algos)}
    for i, messages in outs.items():
        for out in messages:
            if (i, out.dst) in hold:
                held.append((out, i))
            else:
                algos[out.dst].on_message(deliver(out, i, round), params[out.dst])
    for i, a in enumerate(algos):
        a.aggregate(round, params[i])
    return held


def test_with_the_full_codec_and_gamma_1_a_round_is_exact_metropolis_hastings_gossip():
    algos, x0 = nodes(4, SharingConfig(name="full"), gamma=1.0)
    params = [x0 + torch.randn(SIZE, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    before = [p.clone() for p in params]
    assert not any(a.ready(0) for a in algos)  # each waits for both ring neighbours
    exchange(algos, params, 0)
    graph = neighbours("ring", 4)
    for i in range(4):
        row = metropolis_hastings(graph, i)
        expected = sum(w * before[j] for j, w in row.items())
        assert torch.allclose(params[i], expected, atol=1e-6)


@pytest.mark.parametrize(
    "sharing",
    [TopKConfig(name="topk", fraction=0.1), QuantizeConfig(name="quantize", bits=2, block=8)],
)
def test_public_copies_stay_what_every_neighbour_holds_even_with_a_late_message(sharing):
    algos, _ = nodes(5, sharing, gamma=0.3, topology="complete")
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(SIZE, generator=gen) for _ in range(5)]
    late = exchange(algos, params, 0, hold={(1, 0)})  # node 1's round-0 q reaches 0 late
    assert late and algos[0].counts["missed_models"] == 1  # aggregated without it
    for out, src in late:
        algos[out.dst].on_message(deliver(out, src, 0), params[out.dst])
    for r in range(1, 6):
        for p in params:
            p.add_(torch.randn(SIZE, generator=gen), alpha=0.1)  # local steps
        exchange(algos, params, r)
    assert algos[0].counts["late_models"] == 1
    # s_i = sum_j w_ij x̂_j, with x̂_j each node's own public copy: nothing lost or doubled
    graph = neighbours("complete", 5)
    for i, a in enumerate(algos):
        row = metropolis_hastings(graph, i)
        expected = sum(w * algos[j].public for j, w in row.items())
        assert torch.allclose(a.mixed, expected, atol=1e-5)


def test_compressed_choco_pulls_models_together():
    algos, _ = nodes(6, TopKConfig(name="topk", fraction=0.1), gamma=0.2)
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(SIZE, generator=gen) for _ in range(6)]

    def spread():
        mean = torch.stack(params).mean(0)
        return sum(float(((p - mean) ** 2).sum()) for p in params)

    start = spread()
    for r in range(200):
        exchange(algos, params, r)
    assert spread() < 0.01 * start
