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
from node.algorithms import Algorithm, NodeContext, Outgoing, Rejected, load_algorithm
from node.config import NodeSpec
from node.data import task as data_task
from node.files import JsonlWriter, save_npy_atomic
from node.messages import incoming, outgoing
from node.models import Batches, build_model, flatten_parameters
from transport import Clock, Gate, Message, NoGate, Reachability, Transport


def fresh_counters() -> dict:
    """What a node counts during a run, before it starts."""
    return {
        "behind_max": 0.0,  # emulated seconds the latest action came after its instant
        "late_actions": 0,
        "steps": 0,
        "rounds": 0,
        "rejected_messages": 0,
        "outbox_overflow": 0,
        "ready_misses": 0,
        "slack_min": 1.0,  # the least share of a burst's span left when it was done
        "cpu_s": 0.0,  # the process's, every thread, during the run
        "cpu_compute_s": 0.0,  # the training thread's in its local steps
        "left": 0,  # a scenario's graceful leaves and joins of this node
        "joined": 0,
        "stale_on_join": 0,  # delivered before it left, never taken: dropped at its join
    }


class Node:
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
        self.checkpoint = self.run_dir / "checkpoints" / f"n{spec.node_id:03d}.npy"

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
        if "initial" in self._join_models().values():
            self.initial = self.flat.clone()
        self.algorithm = self.new_algorithm()
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=spec.algorithm.lr, **self.algorithm.optimizer_options()
        )
        round_merges = self.algorithm_class.merges_at == "round" and spec.pacing == "burst"
        self.burst = spec.algorithm.local_steps if round_merges else 1
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        if spec.checkpoint:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
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
        )
        algorithm = self.algorithm_class(spec.algorithm, ctx)
        algorithm.init(self.flat)
        return algorithm

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

    # ---- the hot loop ----------------------------------------------------------------------
    def run(self, report=None) -> None:
        """Train through each period the node is up (all of the run without a scenario)."""
        spec, clock = self.spec, self.clock
        self.deadline, self.next_snapshot = 0.0, spec.eval_interval
        clock.sleep_until(0.0, self.stop)
        # Evaluated at instant t: the model after the last aggregation before t, as DL papers
        # and the artifact test post-aggregation models (mid-round ones have drifted locally).
        self.settled = self.flat.clone()
        # The scenario (none in a calibration trial): when this node is up, and the model it
        # joins with (kept or initial)
        self.reach, self.join_models = Reachability(spec.scenario), self._join_models()
        periods = self.reach.up_periods(spec.node_id, spec.duration)
        if spec.start_at > 0.0:  # a new process after a crash: it joins at start_at
            periods = [(max(a, spec.start_at), b) for a, b in periods if b > spec.start_at]
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
        last_snapshot = self.next_snapshot - spec.eval_interval
        if self.deadline >= spec.duration and last_snapshot < spec.duration - 1e-9:
            self._snapshot(spec.duration)
        self.counters["cpu_s"] = time.process_time() - cpu_run

    def _join_models(self) -> dict[float, str]:
        spec = self.spec
        joins = (a for a in spec.scenario if a.kind == "join" and a.node == spec.node_id)
        return {a.t: a.values.get("model", "kept") for a in joins}

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
        """Back at emulated `t` after leaving (or at its first join): with the model it had,
        or the run's initial one, and its algorithm started afresh (what it expected of its
        peers before is void)."""
        if self.spec.pace:
            self.clock.sleep_until(t, self.stop)
        while self.transport.receive() is not None:  # delivered before it left, never taken
            self.counters["stale_on_join"] += 1
        self.deadline = t
        if self.join_models.get(t) == "initial":
            self.flat.copy_(self.initial)
            self.optimizer.state.clear()
        elif t == self.spec.start_at and self.checkpoint.is_file():  # kept across a crash
            self.flat.copy_(torch.from_numpy(np.load(self.checkpoint, allow_pickle=False)))
        self.algorithm = self.new_algorithm(salt=round(t * 1e6))
        self.settled.copy_(self.flat)
        self.counters["joined"] += 1
        interval = self.spec.eval_interval
        self.next_snapshot = math.ceil(t / interval - 1e-9) * interval
        self._snapshots_until(t)

    def _compute_round(self, round_: int, report) -> tuple[list[float], int]:
        """The round's local steps, a burst at a time: computed back to back inside the host's
        compute gate, then held until the burst's emulated end, where what arrived meanwhile
        is handed to the algorithm. A burst is the whole round when messages only count at
        round boundaries, else one step (and then no gate: a step is too short to queue for)."""
        spec, per_round = self.spec, self.spec.algorithm.local_steps
        losses, received = [], 0
        end, complete = self._round_end()
        if self.burst > 1 and not complete:
            # The run ends before this round does: its steps could change nothing anyone
            # sees (no exchange, no merge, the snapshots show the settled model). Skip them.
            if spec.pace:
                self.clock.sleep_until(self.horizon, self.stop)
            self.deadline = end
            self._snapshots_until(self.deadline)
            return losses, received
        while len(losses) < per_round and not self.stop.is_set() and self.deadline < self.horizon:
            steps = min(self.burst, per_round - len(losses))
            gated = steps > 1 and spec.pace
            if gated:
                self.gate.acquire(self.deadline + steps * spec.step_time)
            cpu = time.thread_time()
            try:
                for _ in range(steps):
                    if self.stop.is_set() or self.deadline >= self.horizon:
                        break
                    losses.append(self._local_step())
                    self.deadline += spec.step_time
            finally:
                if gated:
                    self.gate.release()
                self.counters["cpu_compute_s"] += time.thread_time() - cpu
            self._reach(self.deadline, steps * spec.step_time)
            received += self._drain()
            self._snapshots_until(self.deadline)
            if report and time.monotonic() - self.last_report >= spec.progress_every:
                report(self._progress(round_, self.deadline))
                self.last_report = time.monotonic()
        return losses, received

    def _round_end(self) -> tuple[float, bool]:
        """Where the step loop would leave `deadline` after this round, to the last bit, and
        whether the round completes before the up period's end."""
        deadline = self.deadline
        for _ in range(self.spec.algorithm.local_steps):
            if deadline >= self.horizon:
                return deadline, False
            deadline += self.spec.step_time
        return deadline, True

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

    def _reach(self, instant: float, span: float) -> None:
        """Wait for emulated `instant`, the end of a burst of `span` emulated seconds, before
        acting on it (handing over messages, sending, merging). Arriving after it is lag,
        counted with how far behind; before it, the share of the span left is the slack."""
        if not self.spec.pace:
            return
        behind = self.clock.now() - instant
        self.counters["slack_min"] = min(self.counters["slack_min"], -behind / span)
        if behind > 0:
            self.counters["late_actions"] += 1
            self.counters["behind_max"] = max(self.counters["behind_max"], behind)
            self.behind_round = max(self.behind_round, behind)
            return
        self.clock.sleep_until(instant, self.stop)

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
        try:
            replies = self.algorithm.on_message(incoming(msg), self.flat)
        except Rejected:
            self.counters["rejected_messages"] += 1
            return
        if replies:
            self._send(replies, replace=False)

    def _wait_ready(self, round_: int) -> int:
        received, give_up = 0, self.clock.now() + self.algorithm.ready_timeout
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
            save_npy_atomic(self.checkpoint, self.settled.numpy())

    def _progress(self, round_: int, deadline: float) -> control.Progress:
        stats = {"behind_max": self.counters["behind_max"], **self.transport.stats.totals()}
        return control.Progress(node=self.spec.node_id, t=deadline, round=round_, stats=stats)

    def close(self) -> None:
        """Stop and close the transport (sockets in their owner threads), the gate, the log."""
        self.stop.set()
        self.transport.close()
        self.gate.close()
        if self.metrics is not None:
            self.metrics.close()
