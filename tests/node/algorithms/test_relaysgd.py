"""RelaySGD's relay arithmetic against hand-computed numbers: nodes simulated in lockstep."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from node.algorithms.base import Incoming, NodeContext, Rejected
from node.algorithms.relaysgd import RelaySGD, RelaySGDConfig, binary_tree, chain, trees
from node.checks import ConfigError

LAYERS = (3, 2)
SIZE = sum(LAYERS)
COMMON = {"lr": 0.05, "batch_size": 8, "local_steps": 4}
# Of the 4-node trees, per node: the hops to the farthest node (two trees: the larger).
# chain 0-1-2-3; binary tree 0-1, 1-2, 1-3 (a star around 1); its reverse a star around 2.
ECCENTRICITY = {"chain": [3, 2, 2, 3], "binary_tree": [2, 1, 2, 2], "double_binary_tree": [2] * 4}


def config(topology="chain", fill="own", **kw):
    return RelaySGDConfig(
        name="relaysgd", topology=topology, fill=fill, momentum=0.0, timeout=1.0, **COMMON, **kw
    )


def cluster(topology="chain", fill="own", n=4, x0=None):
    nodes = []
    for i in range(n):
        ctx = NodeContext(
            node_id=i, num_nodes=n, layer_sizes=LAYERS, rng=random.Random(i), partition_seed=1
        )
        node = RelaySGD(config(topology, fill), ctx)
        node.init(torch.zeros(SIZE) if x0 is None else x0)
        nodes.append(node)
    return nodes


def deliver(out, src, round):
    return Incoming(out.kind, src, round, out.values.copy(), out.frag, dict(out.aux))


def exchange(nodes, round, sent, drop=()):
    """Round `round` in lockstep: node i sends from `sent[i]`; every message is delivered but
    the (src, dst, frag) in `drop`. Returns {(src, dst, frag): (values, count)}."""
    wire = {}
    for i, node in enumerate(nodes):
        for out in node.round_messages(round, sent[i]):
            wire[i, out.dst, out.frag] = (out.values.copy(), out.aux["count"])
            if (i, out.dst, out.frag) not in drop:
                nodes[out.dst].on_message(deliver(out, i, round), sent[out.dst])
    return wire


def fixed_inputs(n=4):
    """x_i = 10**i everywhere: a sum of them reads off which nodes it holds."""
    return [torch.full((SIZE,), 10.0**i) for i in range(n)]


# ---- trees -------------------------------------------------------------------------------
def test_chain_and_binary_trees_of_seven():
    assert chain(4) == {0: [1], 1: [0, 2], 2: [1, 3], 3: [2]}
    # epfml/relaysgd BinaryTreeTopology on ranks 0..6: p hangs off p // 2 (heap rooted at 1,
    # children 2p, 2p+1), rank 0 is a leaf of 1
    forward = binary_tree(7)
    assert forward == {0: [1], 1: [0, 2, 3], 2: [1, 4, 5], 3: [1, 6], 4: [2], 5: [2], 6: [3]}
    # the second tree: node i takes the place of n-1-i
    reverse = binary_tree(7, reverse=True)
    assert reverse == {6: [5], 5: [3, 4, 6], 4: [1, 2, 5], 3: [0, 5], 2: [4], 1: [4], 0: [3]}
    for i in range(7):
        assert reverse[i] == sorted(6 - j for j in forward[6 - i])
    for n in (2, 5, 16, 60):
        for graph in trees("double_binary_tree", n) + trees("chain", n):
            assert sum(len(v) for v in graph.values()) == 2 * (n - 1)  # n-1 edges ...
            seen, todo = {0}, [0]
            while todo:  # ... and connected: a spanning tree
                for j in graph[todo.pop()]:
                    if j not in seen:
                        seen.add(j)
                        todo.append(j)
            assert seen == set(range(n))


# ---- messages ----------------------------------------------------------------------------
def test_chain_messages_relay_sums_and_counts_as_the_formula_says():
    nodes, x = cluster("chain"), fixed_inputs()
    expected = {  # (src, dst) -> (sum, count) in rounds 0, 1, 2
        0: {(0, 1): (1, 1), (1, 0): (10, 1), (1, 2): (10, 1), (2, 1): (100, 1),
            (2, 3): (100, 1), (3, 2): (1000, 1)},
        1: {(0, 1): (1, 1), (1, 0): (110, 2), (1, 2): (11, 2), (2, 1): (1100, 2),
            (2, 3): (110, 2), (3, 2): (1000, 1)},
        2: {(0, 1): (1, 1), (1, 0): (1110, 3), (1, 2): (11, 2), (2, 1): (1100, 2),
            (2, 3): (111, 3), (3, 2): (1000, 1)},
    }  # fmt: skip
    relay_counts = {0: [2, 3, 3, 2], 1: [3, 4, 4, 3], 2: [4, 4, 4, 4]}
    for r in range(3):
        wire = exchange(nodes, r, x)
        got = {(s, d): (float(v[0]), c) for (s, d, _), (v, c) in wire.items()}
        assert got == expected[r]
        assert all(o.kind == "relay" and o.frag == 0 for o in nodes[1].round_messages(r + 1, x[1]))
        assert [node.ready(r) for node in nodes] == [True] * 4
        stats = [node.aggregate(r, x[i].clone()) for i, node in enumerate(nodes)]
        assert [s["relay_count"] for s in stats] == relay_counts[r]
        assert all(s["missed_relays"] == 0 and s["late_relays"] == 0 for s in stats)


@pytest.mark.parametrize("fill", ["initial", "own", "counts"])
@pytest.mark.parametrize("topology", ["chain", "binary_tree", "double_binary_tree"])
def test_after_diameter_rounds_every_node_holds_the_exact_average(topology, fill):
    # Inputs held fixed (no training, the aggregate goes to a copy): then a round-r message
    # from i holds exactly the nodes within r hops of i on its side of the edge, so in round
    # r node j sums the nodes within r+1 hops of itself: all n, each once, from round
    # eccentricity(j) - 1 on, so every node from round diameter - 1 (the diameter-th
    # exchange) on, and not a round earlier (count < n: the fill is used). (Sending the
    # aggregated models instead mixes rounds: the exactness is for fixed inputs, the
    # paper's distributed mean estimation.)
    n, ecc = 4, ECCENTRICITY[topology]
    d = max(ecc)  # the diameter
    nodes = cluster(topology, fill, x0=torch.full((SIZE,), -7.0))
    x = [torch.arange(SIZE, dtype=torch.float32) * 3 + 10.0**i for i in range(n)]
    mean, total = sum(x) / n, sum(x)
    for r in range(d + 2):
        wire = exchange(nodes, r, x)
        for i, node in enumerate(nodes):
            inbound = torch.zeros(SIZE)
            for (_, dst, frag), (values, _) in wire.items():
                if dst == i:
                    inbound[frag :: len(node.trees)] += torch.from_numpy(values)
            params = x[i].clone()
            count = node.aggregate(r, params)["relay_count"]
            assert (count == n) == (r + 1 >= ecc[i])
            if r >= d - 1:
                assert torch.equal(x[i] + inbound, total)  # relay sums: each x_j once
                assert torch.allclose(params, mean, rtol=0, atol=1e-5)


def test_aggregated_models_reach_consensus():
    nodes, x = cluster("chain", "own"), fixed_inputs()
    for r in range(60):
        exchange(nodes, r, x)
        for i, node in enumerate(nodes):
            node.aggregate(r, x[i])
    spread = max(float((a - b).abs().max()) for a in x for b in x)
    assert spread < 1e-3 * 1111 / 4


def test_fills_for_the_missing_weight():
    x0 = torch.full((SIZE,), 4.0)
    for fill, expected in [("initial", (1 + 10 + 100 + 4) / 4), ("own", (1 + 10 + 100 + 10) / 4)]:
        nodes, x = cluster("chain", fill, x0=x0), fixed_inputs()
        exchange(nodes, 0, x)
        params = x[1].clone()
        assert nodes[1].aggregate(0, params)["relay_count"] == 3
        assert torch.allclose(params, torch.full((SIZE,), expected))
    nodes, x = cluster("chain", "counts"), fixed_inputs()
    exchange(nodes, 0, x)
    params = x[0].clone()
    nodes[0].aggregate(0, params)
    assert torch.allclose(params, torch.full((SIZE,), 11 / 2))


def test_init_is_needed_for_the_initial_fill():
    ctx = NodeContext(0, 4, LAYERS, random.Random(0), 1)
    node = RelaySGD(config("chain", "initial"), ctx)
    with pytest.raises(RuntimeError, match="init"):
        node.aggregate(0, torch.zeros(SIZE))


# ---- lost, late and early messages -------------------------------------------------------
def test_a_lost_message_counts_zero_now_and_in_what_is_relayed_next():
    x0 = torch.full((SIZE,), 4.0)
    nodes, x = cluster("chain", "initial", x0=x0), fixed_inputs()
    exchange(nodes, 0, x)
    for i, node in enumerate(nodes):
        node.aggregate(0, x[i].clone())
    lost = exchange(nodes, 1, x, drop={(2, 1, 0)})
    values, count = lost[2, 1, 0]
    assert count == 2 and np.all(values == 1100.0)  # x_2 + m_32: what node 1 never sees
    assert not nodes[1].ready(1)  # the runtime waits up to `timeout`, then aggregates
    params = x[1].clone()
    stats = nodes[1].aggregate(1, params)
    # C = 1 + c_01 = 2 (not 4); sum = x_1 + m_01, the missing n - C filled with x0
    assert stats["relay_count"] == 2 and stats["missed_relays"] == 1
    assert torch.allclose(params, torch.full((SIZE,), (10 + 1 + 2 * 4) / 4))
    # the lost message arrives after its round closed: dropped and counted
    late = Incoming("relay", 2, 1, np.full(SIZE, 1100.0, dtype=np.float32), 0, {"count": 2})
    nodes[1].on_message(late, params)
    assert nodes[1].aggregate(2, params.clone())["late_relays"] == 1
    # what node 1 relayed in round 2 used zero for it: to 0 only itself, to 2 itself + m_01
    nodes = cluster("chain", "initial", x0=x0)
    for r in range(2):
        exchange(nodes, r, x, drop={(2, 1, 0)} if r == 1 else ())
        for i, node in enumerate(nodes):
            node.aggregate(r, x[i].clone())
    wire = exchange(nodes, 2, x)
    assert (wire[1, 0, 0][1], float(wire[1, 0, 0][0][0])) == (1, 10.0)
    assert (wire[1, 2, 0][1], float(wire[1, 2, 0][0][0])) == (2, 11.0)


def test_an_early_message_waits_for_its_round():
    nodes, x = cluster("chain"), fixed_inputs()
    for out in nodes[0].round_messages(0, x[0]):
        nodes[1].on_message(deliver(out, 0, 0), x[1])
    for out in nodes[0].round_messages(1, x[0]):  # node 0 is already a round ahead
        nodes[1].on_message(deliver(out, 0, 1), x[1])
    for out in nodes[2].round_messages(0, x[2]):
        if out.dst == 1:
            nodes[1].on_message(deliver(out, 2, 0), x[1])
    assert nodes[1].ready(0) and not nodes[1].ready(1)
    assert nodes[1].aggregate(0, x[1].clone())["late_relays"] == 0
    for out in nodes[2].round_messages(1, x[2]):
        if out.dst == 1:
            nodes[1].on_message(deliver(out, 2, 1), x[1])
    assert nodes[1].ready(1)


def test_malformed_relays_are_rejected():
    node = cluster("chain")[1]
    good = {"count": 1}
    bad = [
        Incoming("gossip", 0, 0, np.zeros(SIZE, np.float32), 0, good),
        Incoming("relay", 3, 0, np.zeros(SIZE, np.float32), 0, good),  # not a neighbour
        Incoming("relay", 0, 0, np.zeros(SIZE, np.float32), 1, good),  # no tree 1
        Incoming("relay", 0, 0, np.zeros(SIZE - 1, np.float32), 0, good),
        Incoming("relay", 0, 0, np.zeros(SIZE, np.float64), 0, good),
        Incoming("relay", 0, 0, np.zeros(SIZE, np.float32), 0, {"count": 4}),
        Incoming("relay", 0, 0, np.zeros(SIZE, np.float32), 0, {"count": True}),
        Incoming("relay", 0, 0, np.zeros(SIZE, np.float32), 0, {}),
    ]
    for msg in bad:
        with pytest.raises(Rejected):
            node.on_message(msg, torch.zeros(SIZE))
    assert not node.inbox


# ---- double trees ------------------------------------------------------------------------
def test_double_trees_split_the_vector_by_stride_and_reassemble_it():
    # 4 nodes: tree 0 is the star around 1 (0-1, 1-2, 1-3), tree 1 the star around 2
    nodes = cluster("double_binary_tree", "counts")
    assert [n.trees for n in nodes] == [[[1], [2]], [[0, 2, 3], [2]], [[1], [0, 1, 3]], [[1], [2]]]
    x = [torch.arange(SIZE, dtype=torch.float32) + 100.0 * i for i in range(4)]
    out = nodes[1].round_messages(0, x[1])
    assert sorted((o.dst, o.frag) for o in out) == [(0, 0), (2, 0), (2, 1), (3, 0)]
    for o in out:
        assert np.array_equal(o.values, x[1][o.frag :: 2].numpy())  # 0::2 = [0,2,4], 1::2 = [1,3]
    exchange(nodes, 0, x)
    params = x[1].clone()
    nodes[1].aggregate(0, params)
    # even coordinates: tree 0, node 1 is the centre and hears all 4; odd coordinates: tree 1,
    # node 1 hears only node 2 in round 0, normalised by C = 2
    expected = torch.empty(SIZE)
    expected[0::2] = (sum(x) / 4)[0::2]
    expected[1::2] = ((x[1] + x[2]) / 2)[1::2]
    assert torch.equal(params, expected)


# ---- config ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"topology": "ring"}, "algorithm.topology"),
        ({"fill": "zero"}, "algorithm.fill"),
        ({"momentum": 1.0}, "algorithm.momentum"),
        ({"timeout": 0.0}, "algorithm.timeout"),
    ],
)
def test_bad_settings_name_the_key(change, key):
    values = {"topology": "chain", "fill": "own", "momentum": 0.0, "timeout": 1.0, **change}
    with pytest.raises(ConfigError) as err:
        RelaySGDConfig(name="relaysgd", **values, **COMMON)
    assert err.value.key == key
