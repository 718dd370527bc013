"""A scenario in the hot loop, several nodes in one process on the in-memory twin: a node that
leaves and joins again, one that starts away, a partition, a link that flaps, and every
algorithm going on with peers absent (no hang; losses and misses counted)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from node import calibration
from node.algorithms import load_algorithm
from node.runtime import Node
from tests.node import twin
from tests.node.test_runtime import RECORDER, SMALL, snapshots
from tests.node.test_runtime_equivalence import ALGORITHMS
from transport import MemoryNetwork, VirtualClock


@pytest.fixture(scope="module")
def data_root(shared_data_root):
    return shared_data_root


FAST = "network.rate_mbps=1000"  # a model crosses in 0.5 ms: each round's 3 land at once


def run(tmp_path, data_root, *overrides, events: str = ""):
    scenario = [f"scenario.events=[{events}]"] if events else []
    return twin.run(twin.plan(tmp_path / "run", data_root, *overrides, *scenario), timeout=60)


def test_a_node_that_leaves_is_away_until_it_joins_with_the_initial_model(tmp_path, data_root):
    # 4 nodes, 5 steps a round (0.05 s), a snapshot every 0.05 s; node 1 away on [0.1, 0.25).
    result = run(
        tmp_path,
        data_root,
        *SMALL,
        *RECORDER,
        FAST,
        "num_nodes=4",
        "duration=0.4",
        events="{t: 0.1, leave: [1]}, {t: 0.25, join: [1], model: initial}",
    )
    assert not result.errors
    away = result.nodes[1]
    assert (away.counters["left"], away.counters["joined"]) == (1, 1)
    models = snapshots(tmp_path, 1)
    assert sorted(models) == [0, 50, 100, 250, 300, 350, 400]  # none while away
    np.testing.assert_array_equal(models[250], models[0])  # back with the initial model
    assert not np.array_equal(models[100], models[0])
    # 3 rounds before, 3 after (the one that ends at the join was never computed)
    assert [r["round"] for r in result.records(1)] == [0, 1, 2, 3, 4]
    assert [r["t"] for r in result.records(1)] == pytest.approx([0.05, 0.1, 0.3, 0.35, 0.4])
    # Its peers' messages sent while it was away were lost at once, counted, never delivered.
    # Models sent at 0.15 and 0.2 were lost at once by their senders; those sent as it left
    # (0.1) were in flight, lost where they landed: its own at each peer, each peer's at it.
    for peer in (0, 2, 3):
        stats = result.stats(peer)
        assert (stats.lost_sending["down"], stats.lost_receiving["down"]) == (2, 1)
    assert result.stats(1).lost_receiving["down"] == 3
    # From each peer it got the models of 0.05 and of 0.25 to 0.35 (0.4's lands after the end)
    assert result.stats(1).delivered_messages == 3 * (1 + 3)


def test_a_node_whose_first_event_is_a_join_starts_away(tmp_path, data_root):
    result = run(
        tmp_path,
        data_root,
        *SMALL,
        *RECORDER,
        FAST,
        "num_nodes=3",
        "duration=0.3",
        events="{t: 0.15, join: [2]}",
    )
    assert not result.errors
    assert sorted(snapshots(tmp_path, 2)) == [150, 200, 250, 300]
    assert result.nodes[2].counters["steps"] == 15 and result.nodes[2].counters["joined"] == 1


def test_a_partition_loses_what_crosses_it_until_healed(tmp_path, data_root):
    result = run(
        tmp_path,
        data_root,
        *SMALL,
        *RECORDER,
        FAST,
        "num_nodes=4",
        "duration=0.4",
        events="{t: 0.12, partition: [[0, 1], [2, 3]]}, {t: 0.28, heal: true}",
    )
    assert not result.errors
    # Round boundaries at 0.15, 0.2, 0.25 fall in the partition: 2 of 3 peers cut off each.
    for node in range(4):
        totals = result.stats(node).totals()
        assert totals["messages_lost_partition"] == 3 * 2
        assert totals["messages_lost_down"] == 0
    # The other side's models only came before and after: none of rounds 2-4.
    received = {
        src: sorted(r for _, s, r in result.nodes[0].algorithm.received if s == src)
        for src in (1, 2)
    }
    assert received[1] == list(range(7)) and received[2] == [0, 1, 5, 6]


def test_a_flapping_link_cuts_its_node_off_in_its_down_phases(tmp_path, data_root):
    result = run(
        tmp_path,
        data_root,
        *SMALL,
        *RECORDER,
        FAST,
        "num_nodes=3",
        "duration=0.4",
        events="{t: 0.12, flap: 2, period: 0.1, until: 0.32}",
    )
    assert not result.errors
    # Node 2's links are down on [0.12, 0.17) and [0.22, 0.27): the boundaries at 0.15 and 0.25.
    assert result.stats(2).totals()["messages_lost_link"] == 2 * 2
    assert all(result.stats(n).totals()["messages_lost_link"] == 2 for n in (0, 1))


EVERY_ALGORITHM = ALGORITHMS | {
    "adpsgd_atomic": ["algorithm=adpsgd_atomic"],
    "local": ["algorithm=local"],
}
TIMEOUTS = ("dpsgd", "el", "relaysgd", "lasgd", "adpsgd_atomic")  # each waits, up to a timeout


def run_with_absences(tmp_path, data_root, algorithm, *overrides):
    return run(
        tmp_path,
        data_root,
        *SMALL,
        *EVERY_ALGORITHM[algorithm],
        "num_nodes=4",
        "duration=0.6",
        *(["algorithm.timeout=0.05"] if algorithm in TIMEOUTS else []),
        *overrides,
        events="{t: 0.12, leave: [2]}, {t: 0.2, partition: [[0], [1, 3]]}, {t: 0.3, heal: true}",
    )


@pytest.mark.parametrize("algorithm", sorted(EVERY_ALGORITHM))
def test_every_algorithm_goes_on_when_a_peer_leaves_and_a_partition_comes_and_goes(
    algorithm, tmp_path, data_root
):
    """Push algorithms lose what they send to an absent peer (counted); synchronous ones
    time out with counted misses; LASGD's ring re-forms on each view (no misses to count:
    its rounds never wait)."""
    synchronous = algorithm in ("dpsgd", "el", "relaysgd")
    result = run_with_absences(tmp_path, data_root, algorithm)
    assert not result.errors
    totals = [result.stats(n).totals() for n in (0, 1, 3)]
    lost = sum(t["messages_lost_down"] + t["messages_lost_partition"] for t in totals)
    assert lost > 0 or algorithm in ("local", "lasgd")  # a ring sends only within its view
    for node in (0, 1, 3):  # the ones that stayed trained to the end
        assert result.nodes[node].pacer.deadline == pytest.approx(0.6, abs=0.06)
        if synchronous:
            assert result.nodes[node].counters["ready_misses"] > 0
    if algorithm == "lasgd":  # rings of 3 (after the leave), 1 and 2 (partition), 3 (healed)
        counts = {n: result.nodes[n].algorithm.counts for n in (0, 1, 3)}
        assert all(c["ring_size"] == 3 and c["allreduces"] > 0 for c in counts.values())
        # the pair kept averaging while node 0 was alone
        assert counts[1]["allreduces"] == counts[3]["allreduces"] > counts[0]["allreduces"]
    if algorithm == "adpsgd_atomic":  # an active node whose partner is away gives up, counted
        assert sum(result.nodes[n].algorithm.counts["timeouts"] for n in (0, 1, 3)) > 0


def test_lasgd_configured_to_end_on_an_absent_member_ends_with_its_clear_error(tmp_path, data_root):
    result = run_with_absences(tmp_path, data_root, "lasgd", "algorithm.on_absent=error")
    assert result.errors and all(
        "the ring is not re-formed" in str(e) for e in result.errors.values()
    )


def test_a_calibration_trial_is_static_whatever_the_scenario(tmp_path, data_root):
    """Node 1 is away until t=0.5 in the run, but a trial (rounds before the run, on its own
    transport) runs it from its start: its peer gets its models."""
    plan = twin.plan(
        tmp_path / "run", data_root, *SMALL, *RECORDER, FAST, "num_nodes=2", "duration=1.0",
        "scenario.events=[{t: 0.5, join: [1]}]",
    )  # fmt: skip
    clock = VirtualClock()
    nodes, trial_network = {}, MemoryNetwork(clock)
    with twin.torch_as_in_a_node(plan.nodes[0]):
        for spec in plan.nodes:
            kinds = load_algorithm(spec.algorithm_class).kinds
            node = Node(
                spec,
                MemoryNetwork(clock).transport(spec.node_id, spec.link, kinds, threading.Event()),
                threading.Event(),
            )
            node.setup()
            nodes[spec.node_id] = node
        transports = {
            n: trial_network.transport(n, node.spec.link, node.transport.kinds, threading.Event())
            for n, node in nodes.items()
        }
        peers = {n: t.bind() for n, t in transports.items()}
        results = {}
        cpu, wall = calibration.burst(nodes[0], 3)
        assert cpu > 0 and wall > 0
        before = {n: untouched(node) for n, node in nodes.items()}

        def trial(n):
            try:
                results[n] = calibration.trial(nodes[n], transports[n], peers, clock, rounds=2)
            finally:
                clock.leave()

        for _ in nodes:
            clock.join()
        threads = [threading.Thread(target=trial, args=(n,), daemon=True) for n in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert set(results) == {0, 1}
    assert results[0]["delivered"] == 2 and results[1]["delivered"] == 2
    # the burst and the trials ran on nodes of their own: the run's nodes are as they were
    assert all(untouched(node) == before[n] for n, node in nodes.items())
    assert not any((plan.run_dir / "calibration").iterdir())  # each trial's scratch removed


def untouched(node: Node) -> tuple:
    """What a calibration must not change of a node: model bits, optimizer state, counters,
    algorithm, batch order, emulated instants, log."""
    return (
        node.flat.numpy().tobytes(), len(node.optimizer.state), dict(node.counters),
        id(node.algorithm), node.batches.pos, node.batches.order.tolist(), node.pacer.deadline,
        node.clock, node.metrics.file.tell(),
    )  # fmt: skip
