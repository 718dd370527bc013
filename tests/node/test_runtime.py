"""The hot loop for real, several nodes in one process on the in-memory twin and a virtual
clock: pacing, the snapshot grid, round boundaries, synchronous waits, drops, rejections; and
the same models as the real processes compute."""

from __future__ import annotations

import math

import numpy as np
import pytest

from node.algorithms import Rejected
from node.messages import incoming
from tests.node import twin
from tests.test_golden import ALGORITHM_ARGS, GOLDEN, GOLDEN_ARGS, models_digest
from transport import Message, WireError, wire_size

STEP = 0.01  # emulated seconds per local step in these runs
# 2 nodes, 5 steps a round, a snapshot every 5 steps, links of 8 Mbit/s (1 byte per µs)
# with 2 ms latency.
SMALL = [
    "num_nodes=2",
    "dataset.num_samples=3000",
    f"compute.step_time={STEP}",
    "algorithm.local_steps=5",
    "eval.interval=0.05",
    "network=uniform",
    "network.rate_mbps=8",
    "network.latency_ms=2",
]
RECORDER = ["algorithm=local", "algorithm._target_=tests.node.twin.Recorder"]
MODEL_BYTES = wire_size(Message("model", 0, 1, 0, 0, (np.zeros(8010, np.float32),)))


@pytest.fixture(scope="module")
def data_root(shared_data_root):
    return shared_data_root


def run(tmp_path, data_root, *overrides):
    result = twin.run(twin.plan(tmp_path / "run", data_root, *overrides))
    return result


def snapshots(tmp_path, node):
    """{emulated ms: model} of one node's snapshots."""
    folder = tmp_path / "run" / "snapshots"
    return {
        int(p.stem.split("_t")[1]): np.load(p) for p in sorted(folder.glob(f"n{node:03d}_t*.npy"))
    }


@pytest.mark.parametrize("algorithm", sorted(ALGORITHM_ARGS))
def test_the_twin_computes_the_golden_models_of_the_real_processes(algorithm, tmp_path, data_root):
    run(tmp_path, data_root, *GOLDEN_ARGS, *ALGORITHM_ARGS[algorithm])
    assert models_digest(tmp_path / "run" / "snapshots") in GOLDEN[algorithm]


def test_steps_are_paced_and_snapshots_fall_on_the_grid(tmp_path, data_root):
    result = run(tmp_path, data_root, *SMALL, *RECORDER, "duration=0.2")
    assert not result.errors
    for node in (0, 1):
        records = result.records(node)
        assert [r["round"] for r in records] == [0, 1, 2, 3]
        assert [r["t"] for r in records] == pytest.approx([0.05, 0.1, 0.15, 0.2])
        assert all(r["behind_max"] == 0 for r in records)
        assert result.nodes[node].counters["steps"] == 20
        assert result.nodes[node].counters["late_actions"] == 0
        models = snapshots(tmp_path, node)
        assert sorted(models) == [0, 50, 100, 150, 200]
        # At 50 ms the first round's aggregation has not happened yet: the initial model.
        np.testing.assert_array_equal(models[0], models[50])
        assert not np.array_equal(models[50], models[100])
    np.testing.assert_array_equal(snapshots(tmp_path, 0)[0], snapshots(tmp_path, 1)[0])


def test_a_model_reaches_the_peer_after_its_transfer_and_is_folded_in_at_the_next_step(
    tmp_path, data_root
):
    result = run(tmp_path, data_root, *SMALL, *RECORDER, "duration=0.2")
    transfer = MODEL_BYTES * 8 / 8e6  # on the uplink, then through the downlink cut-through
    for node in (0, 1):
        received = result.nodes[node].algorithm.received
        # Sent at each boundary 0.05, 0.10, 0.15 (the one at 0.20 arrives after the end).
        assert [(src, rnd) for _, src, rnd in received] == [(1 - node, r) for r in range(3)]
        for (now, _, _), boundary in zip(received, (0.05, 0.1, 0.15), strict=True):
            delivered = boundary + transfer + 0.002
            # handed to the algorithm at the first step instant at or after its delivery
            assert now == pytest.approx(math.ceil(delivered / STEP - 1e-9) * STEP)
        # The model sent at 0.2 would leave at 0.2 + transfer: the run is over by then.
        assert result.stats(node).sent_messages == result.stats(node).delivered_messages == 3


def test_a_round_merging_algorithm_computes_rounds_at_once_and_merges_at_boundaries(
    tmp_path, data_root
):
    rounds = ["algorithm=local", "algorithm._target_=tests.node.twin.RoundRecorder"]
    result = run(tmp_path, data_root, *SMALL, *rounds, "duration=0.2")
    assert not result.errors
    for node in (0, 1):
        # Sent at 0.05, 0.10, 0.15; each delivered ~0.034 later, handed over at the next
        # boundary (not at the next step as the step-merging Recorder is).
        received = result.nodes[node].algorithm.received
        assert [(now, src, rnd) for now, src, rnd in received] == [
            (pytest.approx(0.1), 1 - node, 0),
            (pytest.approx(0.15), 1 - node, 1),
            (pytest.approx(0.2), 1 - node, 2),
        ]
        assert [r["t"] for r in result.records(node)] == pytest.approx([0.05, 0.1, 0.15, 0.2])
        assert sorted(snapshots(tmp_path, node)) == [0, 50, 100, 150, 200]
        assert result.nodes[node].burst == 5 and result.nodes[node].counters["steps"] == 20


def test_a_pong_leaves_at_the_ping_delivery_instant_not_at_a_boundary(tmp_path, data_root):
    # One ping a round to the other node; rounds of 0.1 s leave each uplink idle in time.
    pongs = ["algorithm=adpsgd", "algorithm._target_=tests.node.twin.PongRecorder"]
    longer = ["algorithm.degree=2", "algorithm.local_steps=10", "eval.interval=0.1"]
    result = run(tmp_path, data_root, *SMALL, *pongs, *longer, "duration=0.4")
    assert not result.errors
    ping = wire_size(Message("ping", 0, 1, 0, 0, (np.zeros(8010, np.float32),)))
    transfer = ping * 8 / 8e6 + 0.002
    for node in (0, 1):
        merged = result.nodes[node].algorithm.merged
        pings = [sent for _, kind, _, sent in merged if kind == "ping"]
        pongs_in = [sent for _, kind, _, sent in merged if kind == "pong"]
        assert pings == pytest.approx([0.1, 0.2, 0.3])  # sent at the peer's boundaries
        # The peer answered each of this node's pings the instant it arrived, mid-round.
        assert pongs_in == pytest.approx([0.1 + transfer, 0.2 + transfer, 0.3 + transfer])
        # Everything was merged at this node's boundaries only.
        assert sorted({round(now, 6) for now, *_ in merged}) == [0.2, 0.3, 0.4]
        assert result.records(node)[-1]["pongs_sent"] == 3


def test_a_synchronous_round_waits_for_the_slow_neighbour(tmp_path, data_root):
    # Node 1 computes 2x slower (0.1 s a round against 0.05); each waits for the other's model
    # of the same round, which lands `transfer` after the sender's round boundary.
    slow = ["algorithm=dpsgd", "algorithm.topology=complete", "compute.stragglers=[1]"]
    result = run(tmp_path, data_root, *SMALL, *slow, "compute.slowdown=2", "duration=0.3")
    assert not result.errors
    transfer = MODEL_BYTES * 8 / 8e6 + 0.002
    fast, slow_node = result.records(0), result.records(1)
    # Node 1 ends round 0 at 0.1 and sends; node 0 (boundary 0.05) resumes when that lands.
    # Node 0's round 1 ends 0.05 later and its model lands after node 1's boundary at 0.2:
    # node 1 waits for it; node 0 waits for node 1's round-1 model, sent at 0.2. (Records
    # keep 6 decimals.)
    assert [r["t"] for r in fast[:2]] == pytest.approx([0.1 + transfer, 0.2 + transfer], abs=5e-6)
    assert [r["t"] for r in slow_node[:2]] == pytest.approx([0.1, 0.15 + 2 * transfer], abs=5e-6)
    assert all(r["models_merged"] == 1 and r["missed_models"] == 0 for r in fast[:2])
    assert all(r["models_merged"] == 1 and r["missed_models"] == 0 for r in slow_node[:2])
    # The last waits end with the run, not with a timeout.
    assert fast[2]["t"] == pytest.approx(0.3) and result.nodes[0].counters["ready_misses"] == 0


def test_a_neighbour_missing_at_the_timeout_is_a_counted_miss(tmp_path, data_root):
    slow = ["algorithm=dpsgd", "algorithm.topology=complete", "algorithm.timeout=0.05"]
    result = run(
        tmp_path,
        data_root,
        *SMALL,
        *slow,
        "compute.stragglers=[1]",
        "compute.slowdown=100",
        "duration=0.3",
    )
    assert not result.errors
    records = result.records(0)
    # Boundaries at 0.05 and 0.15 each wait 0.05 in vain; the one at 0.25 meets the end.
    assert [r["t"] for r in records] == pytest.approx([0.1, 0.2, 0.3])
    assert [r["missed_models"] for r in records] == [1, 2, 3]
    assert result.nodes[0].counters["ready_misses"] == 2
    assert sorted(snapshots(tmp_path, 0)) == [0, 50, 100, 150, 200, 250, 300]


def test_divshare_drops_what_a_slow_uplink_could_not_send_within_a_round(tmp_path, data_root):
    divshare = ["algorithm=divshare", "algorithm.degree=2", "algorithm.fraction=0.5"]
    # Node 0's uplink needs ~130 ms per fragment; a round lasts 50 ms.
    slow = ["num_nodes=3", "network.rate_mbps=100", "+network.overrides.0={up_mbps: 1}"]
    result = run(tmp_path, data_root, *SMALL, *divshare, *slow, "duration=0.2")
    assert not result.errors
    zero = result.stats(0)
    # 2 fragments to 2 peers each round; each batch replaces the last: never one whole
    # fragment out, the first three rounds' 12 dropped, the fourth's still queued.
    assert zero.sent_messages == 0 and zero.dropped_messages == 12
    assert all(result.stats(n).delivered_bytes[0] == 0 for n in (1, 2))
    for n in (1, 2):  # fast uplinks: every round's 4 leave (the last round's after the end)
        assert result.stats(n).dropped_messages == 0 and result.stats(n).sent_messages == 12


def test_a_rejected_message_is_counted_and_a_bug_ends_the_node(tmp_path, data_root):
    picky = ["algorithm=local", "algorithm._target_=tests.node.twin.Picky", "num_nodes=3"]
    result = run(tmp_path, data_root, *SMALL, *picky, "network.rate_mbps=100", "duration=0.2")
    # Every node gets messages from 0 (refused, counted) and from 2 (a ValueError: a bug).
    assert sorted(result.errors) == [0, 1]
    assert all(isinstance(e, ValueError) for e in result.errors.values())
    assert result.nodes[2].counters["rejected_messages"] >= 1
    assert 2 not in result.errors and result.nodes[2].counters["steps"] == 20


def test_sending_a_kind_the_algorithm_did_not_declare_fails_the_node_at_once(tmp_path, data_root):
    chatty = ["algorithm=local", "algorithm._target_=tests.node.twin.Chatty"]
    result = run(tmp_path, data_root, *SMALL, *chatty, "duration=0.2")
    assert sorted(result.errors) == [0, 1]
    assert all(isinstance(e, WireError) for e in result.errors.values())
    assert "not declared" in str(result.errors[0])
    assert all(result.nodes[n].counters["steps"] == 5 for n in (0, 1))


def test_what_an_algorithm_sees_of_a_message_is_its_arrays_and_no_transport():
    values = np.arange(3, dtype=np.float32)
    msg = incoming(Message("model", 2, 0, 5, 1, (values,), {"x": 1}, 0.5, 0.75))
    assert (msg.kind, msg.src, msg.round, msg.frag, msg.aux) == ("model", 2, 5, 1, {"x": 1})
    assert msg.values is values and msg.extra == () and msg.sent_at == 0.5
    indices = np.arange(3, dtype=np.int32)  # a codec's second array: what the values are of
    msg = incoming(Message("model", 2, 0, 5, 1, (values, indices)))
    assert msg.values is values and len(msg.extra) == 1 and msg.extra[0] is indices
    with pytest.raises(Rejected, match="no buffer"):  # refused, as any malformed input
        incoming(Message("model", 2, 0, 5, 1, ()))
