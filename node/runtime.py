"""One node's training loop: paced local steps, a round-boundary exchange, snapshots to test."""

from __future__ import annotations

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
from node.files import JsonlWriter
from node.membership import INITIAL, Membership
from node.messages import incoming, outgoing
from node.models import Batches, build_model, flatten_parameters
from node.pacing import Pacer
from node.sharing import FULL
from node.snapshots import Snapshots
from node.spec import NodeSpec
from node.timeline import Timeline
from transport import Clock, Gate, Message, NoGate, Transport


class Node:
    """Builds model, data and algorithm around a transport; `run()` is the hot loop. Its
    emulated instants are its `pacer`'s, the models it leaves to test its `snapshots`'."""

    def __init__(
        self,
        spec: NodeSpec,
        transport: Transport | None,
        stop: threading.Event,
        gate: Gate | None = None,
        metrics=None,  # where each round's record goes (None: the run's nodes/NNN.jsonl)
        counters: dict | None = None,
    ):
        self.spec, self.transport, self.stop = spec, transport, stop
        self.gate = gate or NoGate()
        self.algorithm_class = load_algorithm(spec.algorithm_class)
        self.run_dir = Path(spec.run_dir)
        self.clock: Clock | None = None
        self.metrics = metrics
        self.counters = fresh_counters() if counters is None else counters
        self.round_, self.last_report = 0, 0.0
        self.membership = Membership(spec, self.run_dir)  # when it is up, how it comes back
        self.timeline = Timeline.for_node(self.run_dir, spec.node_id, spec.timeline)  # 0: off
        round_merges = self.algorithm_class.merges_at == "round" and spec.pacing == "burst"
        self.burst = spec.algorithm.local_steps if round_merges else 1
        self.pacer = Pacer(spec, self.burst, stop, self.counters, self.timeline)
        self.snapshots = Snapshots(spec, self.membership.checkpoint if spec.checkpoint else None)

    # ---- set-up, before the shared start instant -------------------------------------------
    def setup(self) -> str:
        """Load the shard, build the model and algorithm, bind the inbound side: its address."""
        spec = self.spec
        self.build(*data_task(spec.data.name).train_shard(spec.data, spec.node_id, spec.num_nodes))
        endpoint = self.transport.bind()
        self.attach(self.transport)
        return endpoint

    def build(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Model, optimizer, batches and algorithm on the shard `x`, `y` (read only)."""
        spec = self.spec
        self.loss_fn = data_task(spec.data.name).loss
        order = spec.seed * 100_003 + spec.node_id  # each node its own batch order
        self.batches = Batches(x, y, spec.algorithm.batch_size, seed=order)
        # Same seed: the same initial model everywhere.
        self.model = build_model(spec.model, spec.seed, **spec.model_dims)
        self.flat = flatten_parameters(self.model)
        if self.membership.joins_with_initial:
            self.initial = self.flat.clone()
        self.algorithm = self.new_algorithm()
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=spec.algorithm.lr, **self.algorithm.optimizer_options()
        )
        if self.metrics is None:
            self.metrics = JsonlWriter(self.run_dir / "nodes" / f"{spec.node_id:03d}.jsonl")

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
        """Whom this node can reach at `t`: everyone in a static run (and a trial) until a death."""
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

    def use_gate(self, gate: Gate) -> None:
        """The host's compute gate, once the launcher has named it (before `start`)."""
        self.gate = gate

    def start(self, clock: Clock) -> None:
        """Arm the shared clock: training begins at emulated 0."""
        self.clock = clock
        self.pacer.start(clock, self.gate)
        self.transport.start(clock)

    def depart(self, node: int, t: float) -> None:
        """The launcher saw `node` die at emulated `t` (from the control thread): out of this
        node's views from `t`, and given up on by its transport at once."""
        self.membership.depart(node, t)
        self.transport.depart(node)

    # ---- the hot loop ----------------------------------------------------------------------
    def run(self, report=None) -> None:
        """Train through each period the node is up (all of the run without a scenario)."""
        spec, pacer, snapshots = self.spec, self.pacer, self.snapshots
        self.clock.sleep_until(0.0, self.stop)
        snapshots.begin(self.flat)
        self.round_, periods = 0, self.membership.periods()
        if periods and periods[0][0] == 0.0:
            snapshots.write(0.0)
        self.last_report, cpu_run = time.monotonic(), time.process_time()
        for start, end in periods:
            if start > 0.0:
                self._join(start)
            pacer.enter_period(start, end)  # from 0, or where it joined
            self._train(report)
            if self.stop.is_set():
                break
            if end < spec.duration:
                self.counters["left"] += 1  # gracefully: the transport loses what comes now
        while self.timeline.enabled and (msg := self.transport.receive()) is not None:
            self.timeline.received(msg)  # delivered by the end, never taken: drawn too
        if pacer.deadline >= spec.duration:
            snapshots.finish(spec.duration)
        self.counters["cpu_s"] = time.process_time() - cpu_run

    def _train(self, report) -> None:
        """Rounds until the end of this up period (`horizon`): compute, exchange, merge."""
        spec, pacer = self.spec, self.pacer
        while not self.stop.is_set() and pacer.deadline < pacer.horizon:
            cpu_start, wall_start = time.thread_time(), time.perf_counter()
            waited = self.gate.waited
            pacer.new_round()
            losses, received = pacer.compute_round(
                self.local_step, lambda t: self._after_burst(t, report), self.snapshots.until
            )
            if len(losses) < spec.algorithm.local_steps:
                break  # the period ended mid-round: no exchange for a partial round
            self._send(
                self.algorithm.round_messages(self.round_, self.flat), self.algorithm.drop_unsent
            )
            received += self._wait_ready(self.round_)
            if self.algorithm.ready_timeout > 0 and spec.pace:
                # A synchronous round resumes computing when its wait ended; the evaluation
                # grid instants passed while waiting saw the model from before the wait.
                self.snapshots.until(min(pacer.catch_up(), pacer.horizon))
            merge = self.algorithm.aggregate(self.round_, self.flat)
            self.timeline.merge(max(pacer.deadline, self.clock.now()), self.round_, received)
            self.snapshots.settle(self.flat)
            self.counters["rounds"] += 1
            self.metrics.write(
                {
                    "t": round(pacer.deadline, 6),  # this node's emulated time; lag is separate
                    "round": self.round_,
                    "train_loss": float(np.mean(losses)),
                    # CPU seconds this thread spent per local step, exchange included
                    "cpu_per_step": (time.thread_time() - cpu_start) / len(losses),
                    "received": received,
                    "behind_max": round(pacer.behind_round, 6),
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
        self.pacer.wait_until(t)
        while (msg := self.transport.receive()) is not None:  # came before it left, not taken
            self.counters["stale_on_join"] += 1
            self.timeline.received(msg)
        self.counters["joined"] += 1
        model = self.membership.join_model(t)
        if model is INITIAL:
            self.flat.copy_(self.initial)
            self.optimizer.state.clear()
        elif model is not None:
            self.flat.copy_(model)
        self.algorithm = self.new_algorithm(salt=round(t * 1e6))
        self.snapshots.resume(t, self.flat)

    def _after_burst(self, t: float, report) -> int:
        """At a burst's emulated end `t`: what arrived meanwhile handed to the algorithm (how
        many), the evaluation instants passed, a progress report now and then."""
        received = self._drain()
        self.snapshots.until(t)
        if report and time.monotonic() - self.last_report >= self.spec.progress_every:
            stats = {"behind_max": self.counters["behind_max"], **self.transport.stats.totals()}
            report(control.Progress(self.spec.node_id, t, self.round_, stats))
            self.last_report = time.monotonic()
        return received

    def local_step(self) -> float:
        """One step of SGD on the next batch: its loss."""
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
            if now >= self.pacer.horizon:
                # The run (or this up period) is over: a neighbour that ended mid-round will
                # never send this round, and nothing later could change what is evaluated.
                break
            if now >= give_up:
                self.counters["ready_misses"] += 1
                break
            msg = self.transport.receive(until=min(give_up, self.pacer.horizon))
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
