"""Tensor logic of the baselines against hand-computed results: Swift, AD-PSGD, D-PSGD, EL."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from node.algorithms.adpsgd import ADPSGD, ADPSGDConfig
from node.algorithms.adpsgd_atomic import ADPSGDAtomic, ADPSGDAtomicConfig, is_active
from node.algorithms.base import Incoming, NodeContext, Rejected, uniform_mean
from node.algorithms.dpsgd import DPSGD, DPSGDConfig, metropolis_hastings, neighbours
from node.algorithms.el import ELConfig, EpidemicLearning
from node.algorithms.swift import Swift, SwiftConfig
from node.checks import ConfigError

LAYERS = (3, 2)
SIZE = sum(LAYERS)
COMMON = {"lr": 0.05, "batch_size": 8, "local_steps": 4}


def ctx(node_id=0, num_nodes=6, now=lambda: 0.0):
    return NodeContext(
        node_id=node_id,
        num_nodes=num_nodes,
        layer_sizes=LAYERS,
        rng=random.Random(node_id),
        partition_seed=1,
        now=now,
    )


def deliver(out, src, round=0):
    """The message a receiver would get for Outgoing `out` sent by `src` in `round`."""
    return Incoming(out.kind, src, round, out.values.copy(), out.frag, dict(out.aux))


def vec(*values):
    return torch.tensor(values, dtype=torch.float32)


def msg(kind, src, dst, values, round=0, **aux):
    return Incoming(kind, src, round, np.asarray(values, dtype=np.float32), 0, aux)


# ---- Swift --------------------------------------------------------------------------------
def test_swift_sends_the_full_model_to_j_distinct_peers_and_keeps_its_backlog():
    algo = Swift(SwiftConfig(name="swift", degree=3, **COMMON), ctx(num_nodes=6))
    assert algo.drop_unsent is False and algo.codec.full
    params = torch.arange(SIZE, dtype=torch.float32)
    out = algo.round_messages(0, params)
    assert len(out) == 3 and len({o.dst for o in out}) == 3 and 0 not in {o.dst for o in out}
    assert all(np.array_equal(o.values, params.numpy()) and o.extra == () for o in out)
    params += 100  # later training must not alter what is queued
    assert all(o.values.max() == SIZE - 1 for o in out)


def test_swift_keeps_the_latest_model_per_sender_and_averages_uniformly():
    algo = Swift(SwiftConfig(name="swift", degree=2, **COMMON), ctx(num_nodes=4))
    own = torch.zeros(SIZE)
    for src, round, value in [(1, 0, 3.0), (1, 1, 9.0), (2, 0, 6.0), (1, 0, 100.0)]:
        algo.on_message(msg("model", src, 0, np.full(SIZE, value), round=round), own)
    algo.aggregate(2, own)
    # own 0, sender 1 latest (round 1) = 9, sender 2 = 6: (0 + 9 + 6) / 3; the older round-0
    # copy from sender 1 that arrived last does not replace the round-1 one
    assert torch.allclose(own, torch.full((SIZE,), 5.0))


# ---- AD-PSGD, the artifact's ------------------------------------------------------------
def test_adpsgd_pings_degree_half_peers_with_replacement():
    algo = ADPSGD(ADPSGDConfig(name="adpsgd", degree=6, **COMMON), ctx(num_nodes=3))
    dsts = [o.dst for r in range(20) for o in algo.round_messages(r, torch.zeros(SIZE))]
    assert len(dsts) == 60 and set(dsts) == {1, 2}  # 3 per round, repeats allowed
    assert all(o.kind == "ping" for o in algo.round_messages(0, torch.zeros(SIZE)))
    # with replacement: some round must have picked the same peer twice (2 peers, 3 pings)
    rounds = [[o.dst for o in algo.round_messages(r, torch.zeros(SIZE))] for r in range(5)]
    assert all(len(set(r)) < len(r) for r in rounds)


def test_adpsgd_answers_a_ping_with_its_latest_round_model_and_never_a_pong():
    algo = ADPSGD(ADPSGDConfig(name="adpsgd", degree=2, **COMMON), ctx(node_id=0))
    algo.init(vec(7, 7, 7, 7, 7))
    (early,) = algo.reply(msg("ping", 2, 0, np.full(SIZE, 2.0)))  # before any round: x0
    assert np.array_equal(early.values, np.full(SIZE, 7, np.float32))
    params = vec(1, 1, 1, 1, 1)
    algo.round_messages(0, params)  # latest round-boundary model: all ones
    params += 5  # local steps since then
    ping = msg("ping", 3, 0, np.full(SIZE, 2.0))
    (pong,) = algo.reply(ping)  # at delivery, from the receiver thread
    assert (pong.dst, pong.kind) == (3, "pong")
    assert np.array_equal(pong.values, np.ones(SIZE, np.float32))
    assert algo.on_message(ping, params) == []  # merged later, answered already
    pong_in = msg("pong", 4, 0, np.full(SIZE, 8.0))
    assert algo.reply(pong_in) == [] and algo.on_message(pong_in, params) == []
    stats = algo.aggregate(1, params)
    # own 6, ping from 3 = 2, pong from 4 = 8: (6 + 2 + 8) / 3
    assert torch.allclose(params, torch.full((SIZE,), 16 / 3))
    assert stats["models_merged"] == 2 and stats["pongs_sent"] == 2


def test_adpsgd_rejects_a_model_of_the_wrong_size():
    algo = ADPSGD(ADPSGDConfig(name="adpsgd", degree=2, **COMMON), ctx())
    with pytest.raises(Rejected):
        algo.on_message(msg("ping", 1, 0, np.zeros(SIZE + 1)), torch.zeros(SIZE))


# ---- AD-PSGD, Lian et al.'s atomic average -------------------------------------------------
def test_atomic_average_leaves_both_nodes_with_the_same_model():
    config = ADPSGDAtomicConfig(name="adpsgd_atomic", timeout=5.0, **COMMON)
    active = ADPSGDAtomic(config, ctx(0, 4))
    x_i, x_j = vec(1, 2, 3, 4, 5), vec(5, 4, 3, 2, 1)
    (ping,) = active.round_messages(0, x_i)
    assert ping.kind == "ping" and ping.dst in (1, 3)
    passive = ADPSGDAtomic(config, ctx(ping.dst, 4))
    (pong,) = passive.on_message(deliver(ping, src=0), x_j)
    assert torch.equal(x_j, torch.full((SIZE,), 3.0))  # (x_i + x_j) / 2 on the passive side
    active.on_message(deliver(pong, src=ping.dst), x_i)
    assert torch.equal(x_i, x_j)


def test_atomic_average_applies_the_progress_made_meanwhile_after_averaging():
    config = ADPSGDAtomicConfig(name="adpsgd_atomic", timeout=5.0, **COMMON)
    active = ADPSGDAtomic(config, ctx(0, 2))
    x_i = vec(2, 2, 2, 2, 2)
    (ping,) = active.round_messages(0, x_i)
    x_i -= vec(0.5, 0, 0, 0, 1)  # two local steps while the exchange is on the wire
    pong = msg("pong", 1, 0, np.full(SIZE, 4.0), xid=ping.aux["xid"])  # partner's average
    active.on_message(pong, x_i)
    assert torch.allclose(x_i, vec(3.5, 4, 4, 4, 3))  # avg + (x_i - snapshot)


def test_atomic_roles_are_bipartite_and_one_exchange_at_a_time():
    assert [is_active(i) for i in range(4)] == [True, False, True, False]
    config = ADPSGDAtomicConfig(name="adpsgd_atomic", timeout=5.0, **COMMON)
    assert ADPSGDAtomic(config, ctx(1, 4)).round_messages(0, torch.zeros(SIZE)) == []
    clock = [0.0]
    active = ADPSGDAtomic(config, ctx(2, 6, now=lambda: clock[0]))
    assert all(p % 2 == 1 for p in active.partners)
    (first,) = active.round_messages(0, torch.zeros(SIZE))
    clock[0] = 4.9
    assert active.round_messages(1, torch.zeros(SIZE)) == []  # still waiting for the pong
    clock[0] = 5.1
    (second,) = active.round_messages(2, torch.zeros(SIZE))  # partner given up on
    assert second.aux["xid"] != first.aux["xid"]
    late = msg("pong", first.dst, 2, np.zeros(SIZE), xid=first.aux["xid"])
    params = vec(7, 7, 7, 7, 7)
    active.on_message(late, params)
    assert torch.equal(params, vec(7, 7, 7, 7, 7))
    assert active.aggregate(2, params) == {"averages": 0, "timeouts": 1, "late_pongs": 1}


def test_atomic_passive_ignores_nothing_silently():
    config = ADPSGDAtomicConfig(name="adpsgd_atomic", timeout=5.0, **COMMON)
    passive = ADPSGDAtomic(config, ctx(1, 4))
    with pytest.raises(Rejected):  # a ping from another passive node breaks the bipartition
        passive.on_message(msg("ping", 3, 1, np.zeros(SIZE), xid=1), torch.zeros(SIZE))


# ---- D-PSGD ----------------------------------------------------------------------------------
def test_graphs_are_regular_and_deterministic():
    ring = neighbours("ring", 5)
    assert ring[0] == {1, 4} and ring[2] == {1, 3}
    reg3 = neighbours("regular", 6, 3)
    assert reg3[0] == {1, 5, 3} and all(len(v) == 3 for v in reg3.values())
    assert all(i in reg3[j] for i in reg3 for j in reg3[i])  # undirected
    assert all(len(v) == 4 for v in neighbours("complete", 5).values())
    with pytest.raises(ConfigError, match="algorithm.degree"):
        neighbours("regular", 5, 3)


def test_metropolis_hastings_weights_on_a_small_irregular_graph_by_hand():
    # a path 0 - 1 - 2 plus 1 - 3: deg 0 = 1, deg 1 = 3, deg 2 = 1, deg 3 = 1
    graph = {0: {1}, 1: {0, 2, 3}, 2: {1}, 3: {1}}
    assert metropolis_hastings(graph, 0) == pytest.approx({1: 0.25, 0: 0.75})
    assert metropolis_hastings(graph, 1) == pytest.approx({0: 0.25, 2: 0.25, 3: 0.25, 1: 0.25})
    w = np.zeros((4, 4))
    for i in graph:
        for j, v in metropolis_hastings(graph, i).items():
            w[i, j] = v
    assert np.allclose(w, w.T) and np.allclose(w.sum(axis=0), 1) and np.allclose(w.sum(1), 1)


def test_dpsgd_waits_for_every_neighbour_of_the_round_and_mixes_with_mh_weights():
    config = DPSGDConfig(name="dpsgd", topology="ring", degree=2, timeout=1.0, **COMMON)
    algo = DPSGD(config, ctx(0, 4))  # neighbours 1 and 3, all degrees 2 -> weights 1/3
    params = vec(3, 3, 3, 3, 3)
    out = algo.round_messages(0, params)
    assert sorted(o.dst for o in out) == [1, 3] and all(o.kind == "gossip" for o in out)
    algo.on_message(msg("gossip", 1, 0, np.full(SIZE, 6.0), round=0), params)
    algo.on_message(msg("gossip", 3, 0, np.full(SIZE, 9.0), round=1), params)  # a round early
    assert not algo.ready(0)
    algo.on_message(msg("gossip", 3, 0, np.full(SIZE, 0.0), round=0), params)
    assert algo.ready(0)
    algo.aggregate(0, params)
    assert torch.allclose(params, torch.full((SIZE,), 3.0))  # (3 + 6 + 0) / 3
    assert not algo.ready(1)  # the early round-1 model is kept for round 1
    algo.on_message(msg("gossip", 1, 0, np.full(SIZE, 0.0), round=0), params)  # too late
    # round 1 times out without node 1: its weight stays on the own model
    stats = algo.aggregate(1, params)
    assert torch.allclose(params, torch.full((SIZE,), 2 / 3 * 3 + 9 / 3))
    assert stats["missed_models"] == 1 and stats["late_models"] == 1


# ---- Epidemic Learning -----------------------------------------------------------------------
def test_el_sends_s_models_and_empty_messages_to_the_rest():
    algo = EpidemicLearning(ELConfig(name="el", degree=2, timeout=1.0, **COMMON), ctx(0, 5))
    out = algo.round_messages(0, torch.ones(SIZE))
    assert sorted(o.dst for o in out) == [1, 2, 3, 4]
    models = [o for o in out if o.aux["model"]]
    assert len(models) == 2 and all(o.values.shape == (SIZE,) for o in models)
    assert all(o.values.size == 0 for o in out if not o.aux["model"])


def test_el_round_closes_after_one_message_from_everyone_and_averages_uniformly():
    algo = EpidemicLearning(ELConfig(name="el", degree=2, timeout=1.0, **COMMON), ctx(0, 4))
    params = vec(1, 1, 1, 1, 1)
    algo.on_message(msg("gossip", 1, 0, np.full(SIZE, 4.0), model=True), params)
    algo.on_message(msg("gossip", 2, 0, np.zeros(0), model=False), params)
    assert not algo.ready(0)
    algo.on_message(msg("gossip", 3, 0, np.full(SIZE, 7.0), model=True), params)
    assert algo.ready(0)
    stats = algo.aggregate(0, params)
    assert torch.allclose(params, torch.full((SIZE,), 4.0))  # (1 + 4 + 7) / 3
    assert stats["models_merged"] == 2 and stats["missed_peers"] == 0


def test_el_rejects_an_empty_message_that_carries_data():
    algo = EpidemicLearning(ELConfig(name="el", degree=2, timeout=1.0, **COMMON), ctx(0, 4))
    with pytest.raises(Rejected):
        algo.on_message(msg("gossip", 1, 0, np.ones(3), model=False), torch.zeros(SIZE))


def test_uniform_mean_by_hand():
    assert torch.equal(uniform_mean(vec(0, 3), [vec(3, 3), vec(6, 0)]), vec(3, 2))
