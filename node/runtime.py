"""One node's training loop: paced local steps, a round-boundary exchange, snapshots to test."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import torch

from node import control
from node.algorithms import Incoming, NodeContext, Outgoing, Rejected, load_algorithm
from node.config import NodeSpec
from node.data import task as data_task
from node.files import JsonlWriter, save_npy_atomic
from node.models import Batches, build_model, flatten_parameters
from transport import Clock, Message, Transport


def incoming(msg: Message) -> Incoming:
    """What an algorithm sees of a delivered message: one array of values, no transport."""
    if len(msg.buffers) != 1:
        raise Rejected(f"{msg.kind} from {msg.src} carries {len(msg.buffers)} buffers, not 1")
    return Incoming(msg.kind, msg.src, msg.round, msg.buffers[0], msg.frag, dict(msg.aux))


class Node:
    """Builds model, data and algorithm around a transport; `run()` is the hot loop."""

    def __init__(self, spec: NodeSpec, transport: Transport, stop: threading.Event):
        self.spec, self.transport, self.stop = spec, transport, stop
        self.algorithm_class = load_algorithm(spec.algorithm_class)
        self.run_dir = Path(spec.run_dir)
        self.clock: Clock | None = None
        self.metrics: JsonlWriter | None = None
        self.counters = {
            "behind_max": 0.0,
            "lagged_steps": 0,
            "steps": 0,
            "rounds": 0,
            "rejected_messages": 0,
            "outbox_overflow": 0,
            "ready_misses": 0,
        }

    # ---- set-up, before the shared start instant -------------------------------------------
    def setup(self) -> str:
        """Load the shard, build the model and algorithm, bind the inbound side; returns its
        address."""
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
        ctx = NodeContext(
            node_id=spec.node_id,
            num_nodes=spec.num_nodes,
            layer_sizes=tuple(p.numel() for p in self.model.parameters()),
            rng=random.Random(spec.seed * 1_000_003 + spec.node_id),
            partition_seed=spec.data.partition_seed,
            now=self._now,
        )
        self.algorithm = self.algorithm_class(spec.algorithm, ctx)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=spec.algorithm.lr, **self.algorithm.optimizer_options()
        )
        self.algorithm.init(self.flat)
        (self.run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
        self.metrics = JsonlWriter(self.run_dir / "nodes" / f"{spec.node_id:03d}.jsonl")
        return self.transport.bind()

    def calibrate(self, steps: int, period: float) -> tuple[float, float]:
        """(CPU, wall) seconds per local step while every node steps at once, one step every
        `period` wall seconds (0: flat out). Paced steps start with cold caches as in the run,
        and cost ~1.4x the flat-out ones here. Model and batch order are left untouched."""
        saved, batches = self.flat.clone(), self.batches
        self.batches = Batches(batches.x, batches.y, batches.batch_size, seed=self.spec.seed + 7)
        for _ in range(max(1, steps // 5)):
            self._local_step()
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(steps):
            self._local_step()
            self.stop.wait(max(0.0, start + (i + 1) * period - time.perf_counter()))
        wall = (time.perf_counter() - start) / steps
        cpu = (time.process_time() - cpu) / steps
        self.flat.copy_(saved)
        self.optimizer.state.clear()  # no momentum buffer left over from calibration
        self.batches, self.counters["steps"] = batches, 0
        return cpu, wall

    def _now(self) -> float:
        return self.clock.now()

    def connect(self, peers: dict[int, str]) -> None:
        """Open the outbound side to every peer; sending waits for `start`."""
        self.transport.connect(peers)

    def start(self, clock: Clock) -> None:
        """Arm the shared clock: training begins at emulated 0."""
        self.clock = clock
        self.transport.start(clock)

    # ---- the hot loop ----------------------------------------------------------------------
    def run(self, report=None) -> None:
        spec, clock = self.spec, self.clock
        rounds_per = spec.algorithm.local_steps
        deadline, next_snapshot = 0.0, spec.eval_interval
        clock.sleep_until(0.0, self.stop)
        # Evaluated at instant t: the model after the last aggregation before t, as DL papers
        # and the artifact test post-aggregation models (mid-round ones have drifted locally).
        self.settled = self.flat.clone()
        self._snapshot(0.0)
        last_report = time.monotonic()
        round_ = 0
        while not self.stop.is_set() and deadline < spec.duration:
            losses, behind_round, received = [], 0.0, 0
            cpu_start = time.thread_time()
            for _ in range(rounds_per):
                if self.stop.is_set() or deadline >= spec.duration:
                    break
                losses.append(self._local_step())
                deadline += spec.step_time
                received += self._drain()
                behind_round = max(behind_round, self._pace(deadline))
                while deadline >= next_snapshot - 1e-9:
                    self._snapshot(next_snapshot)
                    next_snapshot += spec.eval_interval
                if report and time.monotonic() - last_report >= spec.progress_every:
                    report(self._progress(round_, deadline))
                    last_report = time.monotonic()
            if len(losses) < rounds_per:
                break  # the run ended mid-round: no exchange for a partial round
            self._send(self.algorithm.round_messages(round_, self.flat), self.algorithm.drop_unsent)
            received += self._wait_ready(round_)
            if self.algorithm.ready_timeout > 0 and spec.pace:
                # A synchronous round resumes computing when its wait ended; the evaluation
                # grid instants passed while waiting saw the model from before the wait.
                deadline = max(deadline, self.clock.now())
                while deadline >= next_snapshot - 1e-9 and next_snapshot <= spec.duration:
                    self._snapshot(next_snapshot)
                    next_snapshot += spec.eval_interval
            merge = self.algorithm.aggregate(round_, self.flat)
            self.settled.copy_(self.flat)
            self.counters["rounds"] += 1
            self.metrics.write(
                {
                    "t": round(deadline, 6),  # this node's emulated time; lag is separate
                    "round": round_,
                    "train_loss": float(np.mean(losses)),
                    # CPU seconds this thread spent per local step, exchange included
                    "cpu_per_step": (time.thread_time() - cpu_start) / len(losses),
                    "received": received,
                    "behind_max": round(behind_round, 6),
                    **merge,
                    **self.transport.stats.totals(),
                }
            )
            round_ += 1
        if deadline >= spec.duration and next_snapshot - spec.eval_interval < spec.duration - 1e-9:
            self._snapshot(spec.duration)

    def _local_step(self) -> float:
        x, y = self.batches.next()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.counters["steps"] += 1
        return loss.item()

    def _pace(self, deadline: float) -> float:
        """Sleep out the rest of the step's emulated budget; returns how far behind we are."""
        if not self.spec.pace:
            return 0.0
        behind = self.clock.now() - deadline
        if behind > 0:
            self.counters["lagged_steps"] += 1
            self.counters["behind_max"] = max(self.counters["behind_max"], behind)
            return behind
        self.clock.sleep_until(deadline, self.stop)
        return 0.0

    def _drain(self) -> int:
        """Hand every message delivered so far to the algorithm; returns how many."""
        count = 0
        while (msg := self.transport.receive()) is not None:
            count += 1
            self._handle(msg)
        return count

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
            if now >= self.spec.duration:
                # The run is over: a neighbour that ended mid-round will never send this
                # round, and anything later could not change what is evaluated any more.
                break
            if now >= give_up:
                self.counters["ready_misses"] += 1
                break
            msg = self.transport.receive(until=min(give_up, self.spec.duration))
            if msg is not None:
                self._handle(msg)
                received += 1 + self._drain()
        return received

    def _send(self, outgoing: list[Outgoing], replace: bool) -> None:
        if not outgoing and not replace:
            return
        node, round_ = self.spec.node_id, self.counters["rounds"]
        messages = [
            Message(out.kind, node, out.dst, round_, out.frag, (out.values,), out.aux)
            for out in outgoing
        ]
        if not self.transport.send(messages, replace):
            self.counters["outbox_overflow"] += len(messages)

    def _snapshot(self, t: float) -> None:
        name = f"n{self.spec.node_id:03d}_t{round(t * 1000):09d}.npy"
        save_npy_atomic(self.run_dir / "snapshots" / name, self.settled.numpy())

    def _progress(self, round_: int, deadline: float) -> control.Progress:
        stats = {"behind_max": self.counters["behind_max"], **self.transport.stats.totals()}
        return control.Progress(node=self.spec.node_id, t=deadline, round=round_, stats=stats)

    def final_report(self) -> control.Done:
        return control.Done(
            node=self.spec.node_id,
            stats={**self.counters, **self.transport.stats.totals()},
            links=self.transport.stats.per_peer(),
            thread_errors=self.transport.errors(),
        )

    def close(self) -> None:
        """Stop and close the transport (sockets in their owner threads), then the log."""
        self.stop.set()
        self.transport.close()
        if self.metrics is not None:
            self.metrics.close()
