"""One node's training loop: paced local steps, a round-boundary exchange, snapshots to test."""

from __future__ import annotations

import math
import random
import threading
import time
from pathlib import Path

import numpy as np
import torch

from node import control
from node.algorithms import Algorithm, NodeContext, Outgoing, Rejected, View, load_algorithm
from node.counters import fresh_counters
from node.data import task as data_task
from node.files import JsonlWriter, save_npy_atomic
from node.membership import INITIAL, Membership
from node.messages import incoming, outgoing
from node.models import Batches, build_model, flatten_parameters
from node.pacing import Pacing
from node.sharing import FULL
from node.spec import NodeSpec
from node.timeline import Timeline
from transport import Clock, Gate, Message, NoGate, Transport


class Node(Pacing):
    """Builds model, data and algorithm around a transport; `run()` is the hot loop."""

    def __init__(
        self, spec: NodeSpec, transport: Transport, stop: threading.Event, gate: Gate | None = None
    ):
        self.spec, self.transport, self.stop = spec, transport, stop
        self.gate = gate or NoGate()
        self.algorithm_class = load_algorithm(spec.algorithm_class)
        self.run_dir = Path(spec.run_dir)
        self.snapshot_dir = self.run_dir / "snapshots"
        self.clock: Clock | None = None
        self.metrics: JsonlWriter | None = None
        self.counters = fresh_counters()
        self.round_, self.horizon = 0, spec.duration
        self.membership = Membership(spec, self.run_dir)  # when it is up, how it comes back
        # The hot loop's state (set afresh by run()): emulated time, evaluation, the round's lag
        self.deadline, self.next_snapshot, self.settled = 0.0, spec.eval_interval, None
        self.behind_round = self.last_report = 0.0
        self.timeline = Timeline.for_node(self.run_dir, spec.node_id, spec.timeline)  # 0: off

    # ---- set-up, before the shared start instant -------------------------------------------
    def setup(self) -> str:
        """Load the shard, build the model and algorithm, bind the inbound side: its address."""
        spec = self.spec
        task = data_task(spec.data.name)
        x, y = task.train_shard(spec.data, spec.node_id, spec.num_nodes)
        self.loss_fn = task.loss
        self.batches = Batches(
            x, y, spec.algorithm.batch_size, seed=spec.seed * 100_003 + spec.node_id
        )
        # Same seed: the same initial model everywhere.
        self.model = build_model(spec.model, spec.seed, **spec.model_dims)
        self.flat = flatten_parameters(self.model)
        if self.membership.joins_with_initial:
            self.initial = self.flat.clone()
        self.algorithm = self.new_algorithm()
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=spec.algorithm.lr, **self.algorithm.optimizer_options()
        )
        round_merges = self.algorithm_class.merges_at == "round" and spec.pacing == "burst"
        self.burst = spec.algorithm.local_steps if round_merges else 1
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = JsonlWriter(self.run_dir / "nodes" / f"{spec.node_id:03d}.jsonl")
        endpoint = self.transport.bind()
        self.attach(self.transport)
        return endpoint

    def new_algorithm(self, salt: int = 0) -> Algorithm:
        """The algorithm as it starts, with its own RNG (`salt`: a rejoin's own draws), given
        the current model."""
        spec = self.spec
        ctx = NodeContext(
            node_id=spec.node_id,
            num_nodes=spec.num_nodes,
            layer_sizes=tuple(p.numel() for p in self.model.parameters()),
            rng=random.Random(spec.seed * 1_000_003 + spec.node_id + salt * 7_919),
            partition_seed=spec.data.partition_seed,
            now=lambda: self.clock.now(),
            view_at=self._view_at,
            sharing=spec.sharing or FULL,
        )
        algorithm = self.algorithm_class(spec.algorithm, ctx)
        algorithm.init(self.flat)
        return algorithm

    def _view_at(self, t: float) -> View:
        """Whom this node can reach at `t`; everyone in a static run and in a calibration trial
        (its spec has no scenario), until the launcher announces a death."""
        if not self.spec.scenario and not self.membership.departed:
            return self.membership.everyone  # built once: this is asked at every message
        return self.membership.view(t)

    def attach(self, transport: Transport) -> None:
        """Answers due at delivery (`Algorithm.reply`) come from `transport`'s own thread."""
        if type(self.algorithm).reply is not Algorithm.reply:
            transport.respond_with(self._respond)

    def connect(self, peers: dict[int, str]) -> None:
        """Open the outbound side to every peer; sending waits for `start`."""
        self.transport.connect(peers)

    def start(self, clock: Clock) -> None:
        """Arm the shared clock: training begins at emulated 0."""
        self.clock = clock
        self.transport.start(clock)

    def depart(self, node: int, t: float) -> None:
        """The launcher saw `node` die at emulated `t` (from the control thread): out of this
        node's views from `t`, and given up on by its transport at once."""
        self.membership.depart(node, t)
        self.transport.depart(node)

    # ---- the hot loop ----------------------------------------------------------------------
    def run(self, report=None) -> None:
        """Train through each period the node is up (all of the run without a scenario)."""
        spec, clock = self.spec, self.clock
        self.deadline, self.next_snapshot = 0.0, spec.eval_interval
        clock.sleep_until(0.0, self.stop)
        # Evaluated at instant t: the model after the last aggregation before t, as DL papers
        # and the artifact test post-aggregation models (mid-round ones have drifted locally).
        self.settled = self.flat.clone()
        self.round_, periods = 0, Membership(spec, self.run_dir).periods()  # spec: a trial's too
        if periods and periods[0][0] == 0.0:
            self._snapshot(0.0)
        self.last_report, cpu_run = time.monotonic(), time.process_time()
        for start, end in periods:
            if start > 0.0:
                self._join(start)
            self.horizon = end
            self._train(report)
            if self.stop.is_set():
                break
            if end < spec.duration:
                self.counters["left"] += 1  # gracefully: the transport loses what comes now
        while self.timeline.enabled and (msg := self.transport.receive()) is not None:
            self.timeline.received(msg)  # delivered by the end, never taken: drawn too
        last_snapshot = self.next_snapshot - spec.eval_interval
        if self.deadline >= spec.duration and last_snapshot < spec.duration - 1e-9:
            self._snapshot(spec.duration)
        self.counters["cpu_s"] = time.process_time() - cpu_run

    def _train(self, report) -> None:
        """Rounds until the end of this up period (`horizon`): compute, exchange, merge."""
        spec = self.spec
        while not self.stop.is_set() and self.deadline < self.horizon:
            cpu_start, self.behind_round = time.thread_time(), 0.0
            waited, wall_start = self.gate.waited, time.perf_counter()
            losses, received = self._compute_round(self.round_, report)
            if len(losses) < spec.algorithm.local_steps:
                break  # the period ended mid-round: no exchange for a partial round
            self._send(
                self.algorithm.round_messages(self.round_, self.flat), self.algorithm.drop_unsent
            )
            received += self._wait_ready(self.round_)
            if self.algorithm.ready_timeout > 0 and spec.pace:
                # A synchronous round resumes computing when its wait ended; the evaluation
                # grid instants passed while waiting saw the model from before the wait.
                self.deadline = max(self.deadline, self.clock.now())
                self._snapshots_until(min(self.deadline, self.horizon))
            merge = self.algorithm.aggregate(self.round_, self.flat)
            self.timeline.merge(max(self.deadline, self.clock.now()), self.round_, received)
            self.settled.copy_(self.flat)
            self.counters["rounds"] += 1
            self.metrics.write(
                {
                    "t": round(self.deadline, 6),  # this node's emulated time; lag is separate
                    "round": self.round_,
                    "train_loss": float(np.mean(losses)),
                    # CPU seconds this thread spent per local step, exchange included
                    "cpu_per_step": (time.thread_time() - cpu_start) / len(losses),
                    "received": received,
                    "behind_max": round(self.behind_round, 6),
                    # wall seconds this round waited for the compute gate, and took in all
                    "gate_wait_s": round(self.gate.waited - waited, 6),
                    "wall_s": round(time.perf_counter() - wall_start, 6),
                    **merge,
                    **self.transport.stats.totals(),
                }
            )
            self.round_ += 1

    def _join(self, t: float) -> None:
        """Back at emulated `t` after leaving (or at its first join, or in a new process after
        a crash), its algorithm started afresh: what it expected of its peers is void."""
        if self.spec.pace:
            self.clock.quiet_until(t)  # away, it sends nothing
            self.clock.sleep_until(t, self.stop)
        while (msg := self.transport.receive()) is not None:  # came before it left, not taken
            self.counters["stale_on_join"] += 1
            self.timeline.received(msg)
        self.deadline, self.counters["joined"] = t, self.counters["joined"] + 1
        model = self.membership.join_model(t)
        if model is INITIAL:
            self.flat.copy_(self.initial)
            self.optimizer.state.clear()
        elif model is not None:
            self.flat.copy_(model)
        self.algorithm = self.new_algorithm(salt=round(t * 1e6))
        self.settled.copy_(self.flat)
        self.next_snapshot = math.ceil(t / self.spec.eval_interval - 1e-9) * self.spec.eval_interval
        self._snapshots_until(t)

    def _snapshots_until(self, t: float) -> None:
        """Every evaluation instant up to `t`: the model settled at the last aggregation."""
        while t >= self.next_snapshot - 1e-9:
            self._snapshot(self.next_snapshot)
            self.next_snapshot += self.spec.eval_interval

    def _local_step(self) -> float:
        x, y = self.batches.next()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.counters["steps"] += 1
        return loss.item()

    def _drain(self) -> int:
        """Hand every message delivered so far to the algorithm; returns how many."""
        count = 0
        while (msg := self.transport.receive()) is not None:
            count += 1
            self._handle(msg)
        return count

    def _respond(self, msg: Message) -> list[Message]:
        """Runs in the transport's receiver thread at `msg`'s delivery instant."""
        try:
            replies = self.algorithm.reply(incoming(msg))
        except Rejected:
            return []  # `on_message` refuses it too, and counts it
        return outgoing(self.spec.node_id, self.counters["rounds"], replies)

    def _handle(self, msg: Message) -> None:
        self.timeline.received(msg)
        try:
            replies = self.algorithm.on_message(incoming(msg), self.flat)
        except Rejected:
            self.counters["rejected_messages"] += 1
            return
        if replies:
            self._send(replies, replace=False)

    def _wait_ready(self, round_: int) -> int:
        received, start = 0, self.clock.now()
        give_up = start + self.algorithm.ready_timeout
        while not self.algorithm.ready(round_) and not self.stop.is_set():
            now = self.clock.now()
            if now >= self.horizon:
                # The run (or this node's up period) is over: a neighbour that ended mid-round
                # will never send this round, and anything later could not change what is
                # evaluated any more.
                break
            if now >= give_up:
                self.counters["ready_misses"] += 1
                break
            msg = self.transport.receive(until=min(give_up, self.horizon))
            if msg is not None:
                self._handle(msg)
                received += 1 + self._drain()
        self.timeline.wait(start, self.clock.now())
        return received

    def _send(self, messages: list[Outgoing], replace: bool) -> None:
        if not messages and not replace:
            return
        sent = outgoing(self.spec.node_id, self.counters["rounds"], messages)
        if not self.transport.send(sent, replace):
            self.counters["outbox_overflow"] += len(sent)

    def _snapshot(self, t: float) -> None:
        name = f"n{self.spec.node_id:03d}_t{round(t * 1000):09d}.npy"
        save_npy_atomic(self.snapshot_dir / name, self.settled.numpy())
        if self.spec.checkpoint:  # what a crash will not take: the model settled by t
            save_npy_atomic(self.membership.checkpoint, self.settled.numpy())

    def _progress(self, round_: int, deadline: float) -> control.Progress:
        stats = {"behind_max": self.counters["behind_max"], **self.transport.stats.totals()}
        return control.Progress(node=self.spec.node_id, t=deadline, round=round_, stats=stats)

    def close(self) -> None:
        """Stop and close the transport (sockets in their owner threads), the gate, the clock's
        end of the keeper (this is its thread), the log."""
        self.stop.set()
        self.transport.close()
        self.gate.close()
        if self.clock is not None:
            self.clock.close()
        if self.metrics is not None:
            self.metrics.close()
        self.timeline.close()
