"""LASGD's ring All-Reduce: hand-computed averages between instances in one process, then the
same state machine over real sockets and shaped links in N node processes."""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time

import numpy as np
import pytest
import torch

from node.algorithms import builtin_algorithms
from node.algorithms.base import Incoming, NodeContext, Rejected, View
from node.algorithms.lasgd import LASGD, LASGDConfig, pieces, split
from node.checks import ConfigError
from node.messages import incoming
from transport import DilatedClock, LinkSpec, Message, ZmqTransport


def config(chunks=1, timeout=10.0, sync_every=1, on_absent="reform"):
    return LASGDConfig(
        name="lasgd",
        lr=0.05,
        batch_size=8,
        local_steps=4,
        sync_every=sync_every,
        chunks=chunks,
        timeout=timeout,
        on_absent=on_absent,
    )


def ring(n, layers, chunks=1, now=lambda: 0.0, timeout=10.0, sync_every=1, **kw):
    """`views`: a dict node -> View each node sees now (tests change it); `on_absent`."""
    views = kw.pop("views", None)
    return [
        LASGD(
            config(chunks, timeout, sync_every, **kw),
            NodeContext(
                node_id=i,
                num_nodes=n,
                layer_sizes=layers,
                rng=random.Random(i),
                partition_seed=1,
                now=now,
                view_at=None if views is None else (lambda t, i=i: views[i]),
            ),
        )
        for i in range(n)
    ]


def deliver(out, src):
    """The message node `out.dst` gets for Outgoing `out` from `src` (a read-only buffer, as
    np.frombuffer on a received frame is)."""
    values = out.values.copy()
    values.flags.writeable = False
    return Incoming(out.kind, src, 0, values, out.frag, dict(out.aux))


class Net:
    """In-flight messages between in-process instances, delivered in any order we choose."""

    def __init__(self, algos, params):
        self.algos, self.params, self.wire, self.sent = algos, params, [], {}

    def post(self, src, outgoing):
        for out in outgoing:
            assert out.dst == self.algos[src].ring.next  # ring: only to the next member
            self.sent[src] = self.sent.get(src, 0) + out.values.nbytes
            self.wire.append((out.dst, deliver(out, src)))

    def start(self, node, round=0):
        self.post(node, self.algos[node].round_messages(round, self.params[node]))

    def run(self, rng=None, hold=lambda dst, msg: False):
        """Deliver until nothing is left but what `hold` keeps back; returns the held."""
        held = []
        while self.wire:
            dst, msg = self.wire.pop(rng.randrange(len(self.wire)) if rng else 0)
            if hold(dst, msg):
                held.append((dst, msg))
                continue
            self.post(dst, self.algos[dst].on_message(msg, self.params[dst]))
        return held


def vec(*values):
    return torch.tensor(values, dtype=torch.float32)


# x_0, x_1, x_2 of 7 values; sums [9, 6, 12, 9, 9, 3, 9] -> mean [3, 2, 4, 3, 3, 1, 3].
X3 = [vec(3, 0, 6, -3, 9, 1, 2), vec(0, 3, 6, 3, 0, 1, 5), vec(6, 3, 0, 9, 0, 1, 2)]
MEAN3 = vec(3, 2, 4, 3, 3, 1, 3)


def test_split_is_array_split_and_pieces_split_each_segment():
    assert split(0, 10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert pieces(10, 3, 1) == [(0, 4), (4, 7), (7, 10)]
    # segment 0 = 0..4 in 2, segment 1 = 4..7 in 2, segment 2 = 7..10 in 2
    assert pieces(10, 3, 2) == [(0, 2), (2, 4), (4, 6), (6, 7), (7, 9), (9, 10)]
    assert pieces(2, 3, 1) == [(0, 1), (1, 2), (2, 2)]  # more nodes than values: empty ones
    for size, parts in [(7, 4), (100, 7), (5, 5), (33, 2)]:
        expected = np.array_split(np.arange(size), parts)
        assert [list(range(lo, hi)) for lo, hi in split(0, size, parts)] == [
            a.tolist() for a in expected
        ]


def test_three_nodes_end_with_the_exact_mean_bitwise_identical():
    algos, params = ring(3, (4, 3)), [x.clone() for x in X3]
    net = Net(algos, params)
    for i in range(3):
        net.start(i)
    net.run()
    for i in range(3):
        assert torch.equal(params[i], MEAN3)
        stats = algos[i].aggregate(0, params[i])
        assert stats["allreduces"] == 1 and stats["allreduce_in_flight"] == 0


@pytest.mark.parametrize("chunks", [1, 2, 3])
@pytest.mark.parametrize("n", [3, 4])
def test_any_delivery_order_gives_every_node_the_exact_mean(n, chunks):
    # x_i = base + d_i with sum_i d_i = 0: the mean is `base`, exactly.
    gen = torch.Generator().manual_seed(n * 10 + chunks)
    base = torch.randint(-50, 50, (11,), generator=gen).float()
    offsets = torch.randint(-20, 20, (n, 11), generator=gen).float()
    offsets[-1] = -offsets[:-1].sum(0)
    params = [base + offsets[i] for i in range(n)]
    algos = ring(n, (6, 5), chunks)
    net = Net(algos, params)
    for i in random.Random(n).sample(range(n), n):
        net.start(i)
    net.run(rng=random.Random(chunks))
    for i in range(n):
        assert torch.equal(params[i], base), i
        assert algos[i].counts["allreduces"] == 1 and algos[i].active is None


def test_the_fold_back_keeps_the_local_progress_made_meanwhile():
    algos, params = ring(3, (4, 3)), [x.clone() for x in X3]
    net = Net(algos, params)
    for i in range(3):
        net.start(i)
    params[0] += vec(0.5, -1, 0, 0, 0, 2, 0.25)  # local steps taken while the ring works
    net.run()
    # x <- avg + (x - s) = mean + progress; the others had no progress: the mean itself
    assert torch.equal(params[0], vec(3.5, 1, 4, 3, 3, 3, 3.25))
    assert torch.equal(params[1], MEAN3) and torch.equal(params[2], MEAN3)


def test_messages_of_an_all_reduce_a_node_has_not_started_are_kept_until_it_starts():
    algos, params = ring(3, (4, 3)), [x.clone() for x in X3]
    net = Net(algos, params)
    net.start(1)
    net.start(2)
    net.run()
    # Node 0 got node 2's segment (step 0) and node 1's summed by node 2 (step 1) but does
    # not start early; nothing completes without it.
    assert torch.equal(params[0], X3[0]) and algos[0].active is None
    assert algos[0].counts["allreduce_early"] == 2 and algos[0].next_k == 0
    assert all(a.counts["allreduces"] == 0 for a in algos)
    net.start(0)  # its round boundary: the snapshot, then the kept message
    net.run()
    assert all(torch.equal(p, MEAN3) for p in params)

    # All-Reduce 1 completes at nodes 1 and 2 while node 0 still waits for its last gather
    # (step 1: it forwards no further); they start All-Reduce 2 and reach node 0 with it.
    params[:] = [x.clone() * 2 for x in X3]
    for i in range(3):
        net.start(i, round=1)

    def last_gather_to_0(dst, m):
        return dst == 0 and m.kind == "gather" and m.aux["step"] == 1

    held = net.run(hold=last_gather_to_0)
    assert len(held) == 1 and algos[0].active.k == 1
    assert algos[1].active is None and algos[2].active is None
    for i in (1, 2):
        net.start(i, round=2)
    assert net.run(hold=last_gather_to_0) == []
    # the same two reduce messages, of All-Reduce 2 this time, kept while node 0 is in 1
    assert algos[0].counts["allreduce_early"] == 4 and algos[0].active.k == 1
    with pytest.raises(Rejected, match="stale"):  # the same one twice
        algos[0].on_message(
            Incoming("reduce", 2, 0, np.zeros(2, np.float32), 2, {"ar": 2, "step": 0}),
            params[0],
        )
    net.wire = held
    net.run()
    assert algos[0].counts["allreduces"] == 2 and algos[0].active is None
    assert all(torch.equal(p, MEAN3 * 2) for p in params)
    net.start(0, round=2)
    net.run()
    assert all(torch.equal(p, MEAN3 * 2) for p in params)
    assert [a.counts["allreduces"] for a in algos] == [3, 3, 3]


def test_bytes_sent_per_node_per_all_reduce_are_2_n_minus_1_over_n_of_the_model():
    n, size = 4, 24
    for chunks in (1, 3):
        algos = ring(n, (12, 12), chunks)
        params = [torch.full((size,), float(i)) for i in range(n)]
        net = Net(algos, params)
        for i in range(n):
            net.start(i)
        net.run()
        model_bytes = size * 4
        assert net.sent == {i: 2 * (n - 1) * model_bytes // n for i in range(n)}  # 144 B
        assert all(torch.equal(p, torch.full((size,), 1.5)) for p in params)
    # Uneven segments (3, 2, 2 values): node i sends every segment but i+1 (reduce) and
    # every segment but i+2 (gather).
    algos, params = ring(3, (4, 3)), [x.clone() for x in X3]
    net = Net(algos, params)
    for i in range(3):
        net.start(i)
    net.run()
    assert net.sent == {0: (14 - 2 - 2) * 4, 1: (14 - 2 - 3) * 4, 2: (14 - 3 - 2) * 4}


def test_a_stalled_all_reduce_ends_the_run_with_a_clear_error_when_so_configured(fake_clock):
    algos, params = ring(3, (4, 3), now=fake_clock, on_absent="error"), [x.clone() for x in X3]
    net = Net(algos, params)
    net.start(0)
    net.start(1)  # node 2 is dead: it never starts, never answers
    fake_clock.t = 8.0
    net.run()  # node 1 gets node 0's reduce at t = 8: progress
    fake_clock.t = 17.0
    net.start(1, round=1)  # 9 s without progress: still waiting
    with pytest.raises(RuntimeError, match=r"All-Reduce 0 stalled for 17.0 s waiting for node 2"):
        net.start(0, round=1)
    fake_clock.t = 18.5
    with pytest.raises(RuntimeError, match="a ring member is gone") as err:
        algos[1].round_messages(2, params[1])
    assert not isinstance(err.value, Rejected)  # the runtime must not count it as rejected
    assert "stalled for 10.5 s waiting for node 0" in str(err.value)


def test_with_reform_a_stalled_all_reduce_is_abandoned_and_the_next_one_starts(fake_clock):
    algos, params = ring(3, (4, 3), now=fake_clock), [x.clone() for x in X3]
    net = Net(algos, params)
    net.start(0)
    net.start(1)  # node 2 is dead and no view says so: nothing completes
    net.run()
    fake_clock.t = 10.5
    out = algos[0].round_messages(1, params[0])  # 10.5 s without progress: given up
    assert algos[0].counts["allreduce_abandoned"] == 1 and algos[0].active.k == 1
    assert [o.aux["ar"] for o in out] == [1] and torch.equal(params[0], X3[0])  # no fold


def test_the_ring_re_forms_on_the_members_of_each_new_view():
    """4 nodes average; node 2 goes away (view 1): the other three average on a ring of 3;
    it comes back (view 2): all four again. Each time the exact mean, bitwise identical."""
    gen = torch.Generator().manual_seed(4)
    views = {i: View(0, (0, 1, 2, 3)) for i in range(4)}
    algos = ring(4, (6, 5), views=views)
    params = [torch.randint(-50, 50, (11,), generator=gen).float() * 12 for _ in range(4)]
    net = Net(algos, params)
    for i in range(4):
        net.start(i)
    net.run()
    mean4 = params[0].clone()
    assert all(torch.equal(x, mean4) for x in params)
    for i in (0, 1, 3):
        views[i] = View(1, (0, 1, 3))
    params[3] += torch.arange(11.0) * 3  # they drift apart again (sums divisible by 3)
    for i in (0, 1, 3):
        net.start(i, round=1)
    assert all(dst != 2 and msg.aux["ep"] == 1 for dst, msg in net.wire)
    net.run()
    mean3 = (mean4 * 3 + torch.arange(11.0) * 3) / 3
    assert all(torch.equal(params[i], mean3) for i in (0, 1, 3)), params
    assert torch.equal(params[2], mean4) and algos[0].counts["ring_size"] == 3
    for i in range(4):
        views[i] = View(2, (0, 1, 2, 3))
    for i in range(4):
        net.start(i, round=2)
    net.run()
    assert all(torch.equal(x, (mean3 * 3 + mean4) / 4) for x in params)
    assert [a.counts["allreduces"] for a in algos] == [3, 3, 2, 3]
    assert all(a.counts["allreduce_abandoned"] == 0 for a in algos)


def test_a_view_change_abandons_what_is_in_flight_and_messages_ahead_wait_for_it():
    """Node 3 leaves while All-Reduce 0 is in flight. Nodes 0 and 1 see it first: they
    abandon theirs and start view 1's; node 2, still in view 0, keeps their message until it
    gets there too. A message of view 0 is stale in view 1."""
    views = {i: View(0, (0, 1, 2, 3)) for i in range(4)}
    algos, params = ring(4, (6, 5), views=views), [vec(*range(11)) * (i + 1) for i in range(4)]
    net = Net(algos, params)
    for i in range(4):
        net.start(i)
    old = list(net.wire)
    net.wire.clear()  # lost with node 3's leave
    views[0] = views[1] = View(1, (0, 1, 2))
    net.start(0, round=1)
    net.start(1, round=1)
    assert [a.counts["allreduce_abandoned"] for a in algos] == [1, 1, 0, 0]
    net.run()  # node 1's reduce reaches node 2, still in view 0: kept, not rejected
    assert algos[2].ahead and algos[2].active.k == 0 and algos[2].ring.epoch == 0
    dst, stale = next((d, m) for d, m in old if d == 1)
    with pytest.raises(Rejected, match="stale"):
        algos[1].on_message(stale, params[1])
    views[2] = View(1, (0, 1, 2))
    net.start(2, round=1)
    assert algos[2].counts["allreduce_abandoned"] == 1 and not algos[2].ahead
    net.run()
    mean = vec(*range(11)) * 2  # (1 + 2 + 3) / 3
    assert all(torch.equal(params[i], mean) for i in range(3))
    assert torch.equal(params[3], vec(*range(11)) * 4)


def test_alone_in_its_view_a_node_sends_nothing():
    views = {0: View(3, (0,)), 1: View(3, (1, 2)), 2: View(3, (1, 2))}
    algos = ring(3, (4, 3), views=views)
    assert algos[0].round_messages(0, torch.zeros(7)) == []
    assert [o.dst for o in algos[1].round_messages(0, torch.zeros(7))] == [2]


def test_malformed_ring_messages_are_rejected():
    algos, params = ring(3, (4, 3)), [x.clone() for x in X3]
    algos[0].round_messages(0, params[0])

    def send(kind, src, frag, values, **aux):
        values = np.asarray(values, dtype=np.float32)
        return algos[0].on_message(Incoming(kind, src, 0, values, frag, aux), params[0])

    for bad, match in [
        (("reduce", 1, 2, [0, 0], {"ar": 0, "step": 0}), "unexpected"),  # not from prev
        (("gossip", 2, 2, [0, 0], {"ar": 0, "step": 0}), "unexpected"),
        (("reduce", 2, 2, [0, 0], {"ar": 0, "step": 2}), "bad aux"),  # steps are 0..n-2
        (("reduce", 2, 2, [0, 0], {"ar": 0}), "bad aux"),
        (("reduce", 2, 1, [0, 0], {"ar": 0, "step": 0}), "carries piece"),  # 2's is seg 2
        (("reduce", 2, 2, [0, 0, 0], {"ar": 0, "step": 0}), "float32 x 2"),
        (("reduce", 2, 2, [0, 0], {"ar": 5, "step": 0}), "stale"),
    ]:
        kind, src, frag, values, aux = bad
        with pytest.raises(Rejected, match=match):
            send(kind, src, frag, values, **aux)
    send("reduce", 2, 2, [1, 1], ar=0, step=0)
    with pytest.raises(Rejected, match="twice"):
        send("reduce", 2, 2, [1, 1], ar=0, step=0)
    assert algos[0].counts["allreduces"] == 0


def test_rounds_never_wait_and_all_reduces_start_every_sync_every_rounds():
    (algo, _), x = ring(2, (3,), sync_every=2), torch.zeros(3)
    assert algo.ready(0) and algo.ready_timeout == 0.0 and algo.drop_unsent is False
    assert len(algo.round_messages(0, x)) == 1
    algo.active = None  # as if it had completed
    assert algo.round_messages(1, x) == [] and len(algo.round_messages(2, x)) == 1


def test_config_is_registered_and_checked():
    assert builtin_algorithms()["lasgd"] is LASGD and LASGD.config_class is LASGDConfig
    assert LASGD.kinds == {"reduce", "gather"}
    for key, value in [("chunks", 0), ("sync_every", 0), ("timeout", 0.0), ("on_absent", "x")]:
        with pytest.raises(ConfigError, match=f"algorithm.{key}"):
            LASGDConfig(**{**config().__dict__, key: value})


# ---- the same ring over real processes, sockets and shaped links --------------------------
RATE = 1e9  # bit/s: generous, so the test is quick
SIZE = 1001  # uneven segments for every N below


def _send(transport, node, outgoing):
    if outgoing:
        messages = [Message(o.kind, node, o.dst, 0, o.frag, (o.values,), o.aux) for o in outgoing]
        transport.send(messages)


def _ring_node(node, n, values, t0, delay, conn):
    """One node process: a real ZeroMQ transport and LASGD driven by a drain loop. It reaches
    its round boundary `delay` seconds into the loop or, with `delay` None, once a peer's
    message has come before it (LASGD keeps it early)."""
    torch.set_num_threads(1)
    stop = threading.Event()
    link = LinkSpec(up_mbps=RATE / 1e6, down_mbps=RATE / 1e6, latency_ms=1.0)
    transport = ZmqTransport(node, link, LASGD.kinds, stop)
    clock = DilatedClock(t0, 1.0)
    try:
        conn.send(transport.bind())
        if not conn.poll(20):
            raise RuntimeError(f"node {node} got no peers")
        peers = conn.recv()
        transport.connect(peers)
        transport.start(clock)
        stats = transport.stats
        layers = (SIZE,)
        nctx = NodeContext(node, n, layers, random.Random(node), 1, now=clock.now)
        algo = LASGD(config(chunks=2), nctx)
        params = torch.from_numpy(np.array(values, dtype=np.float32))
        deadline = time.monotonic() + 60
        start_at = None if delay is None else time.monotonic() + delay
        started = False
        while algo.counts["allreduces"] < 1 and time.monotonic() < deadline:
            if start_at is None:
                due = algo.counts["allreduce_early"] >= 1
            else:
                due = time.monotonic() >= start_at
            if not started and due:  # this node's round boundary
                _send(transport, node, algo.round_messages(0, params))
                started = True
            msg = transport.receive(until=clock.now() + 0.01)
            if msg is not None:
                _send(transport, node, algo.on_message(incoming(msg), params))
        # The last gathers this node forwards must leave before its sockets close.
        while stats.sent_messages < 2 * (n - 1) * 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        conn.send((params.numpy().tobytes(), stats.total_sent, dict(algo.counts)))
    except BaseException as exc:
        conn.send(repr(exc))
    finally:
        transport.close()
        conn.close()


@pytest.mark.process
@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", [3, 4, 5])
def test_ring_all_reduce_over_real_processes_gives_every_node_the_exact_mean(n):
    gen = np.random.default_rng(n)
    base = gen.integers(-1000, 1000, SIZE).astype(np.float32)
    offsets = gen.integers(-100, 100, (n, SIZE)).astype(np.float32)
    offsets[-1] = -offsets[:-1].sum(0)
    mp_ctx = mp.get_context("fork")  # torch is already loaded here: no re-import per node
    t0 = time.monotonic()
    procs, conns = [], []
    try:
        for i in range(n):
            parent, child = mp_ctx.Pipe()
            # Node 0 reaches its round boundary last, once a peer's message waits for it.
            delay = None if i == 0 else 0.05 * i
            args = (i, n, (base + offsets[i]).tolist(), t0, delay, child)
            proc = mp_ctx.Process(target=_ring_node, args=args, daemon=True)
            proc.start()
            child.close()
            procs.append(proc)
            conns.append(parent)
        endpoints = {}
        for i, conn in enumerate(conns):
            assert conn.poll(30), f"node {i} sent no endpoint"
            endpoints[i] = conn.recv()
        for i, conn in enumerate(conns):
            conn.send({j: ep for j, ep in endpoints.items() if j != i})
        results = []
        for i, conn in enumerate(conns):
            assert conn.poll(90), f"node {i} sent no result"
            results.append(conn.recv())
        for proc in procs:
            proc.join(10)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in conns:
            conn.close()
    for i, result in enumerate(results):
        assert isinstance(result, tuple), f"node {i}: {result}"
        final, sent, counts = result
        assert np.array_equal(np.frombuffer(final, dtype=np.float32), base), i
        assert counts["allreduces"] == 1
        assert i != 0 or counts["allreduce_early"] >= 1  # node 0 started last: kept its input
        # Every segment but i+1 (reduce) and every one but i+2 (gather), plus the headers
        # of 2 (N-1) x 2 chunks messages.
        segment = [hi - lo for lo, hi in split(0, SIZE, n)]
        payload = 4 * (2 * SIZE - segment[(i + 1) % n] - segment[(i + 2) % n])
        assert 0 < sent - payload < 4 * (n - 1) * 200
