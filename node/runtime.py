"""One node's training loop: paced local steps, a round-boundary exchange, snapshots to test."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from pathlib import Path

import numpy as np
import torch
import zmq

from node.algorithms import ALGORITHMS, NodeContext, Outgoing
from node.config import NodeSpec
from node.data import task as data_task
from node.models import build_model
from transport import (
    Downlink,
    EmulatedClock,
    LinkStats,
    Message,
    Receiver,
    SendBatch,
    Sender,
    TokenBucket,
)

INBOX_SIZE = 4096
OUTBOX_SIZE = 256


def flatten_parameters(model: torch.nn.Module) -> torch.Tensor:
    """Make every parameter a view into one flat vector, so algorithms work on a single tensor."""
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params]).contiguous()
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


class Batches:
    """Endless shuffled mini-batches of this node's shard, reshuffled every epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, min(batch_size, len(y))
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.pos = torch.randperm(len(y), generator=self.generator), 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.batch_size > len(self.order):
            self.order, self.pos = torch.randperm(len(self.y), generator=self.generator), 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.x[idx], self.y[idx]


def write_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    tmp.replace(path)


class Node:
    """Builds model, data, algorithm and the two transport threads; `run()` is the hot loop."""

    def __init__(self, spec: NodeSpec, stop: threading.Event):
        self.spec, self.stop = spec, stop
        self.run_dir = Path(spec.run_dir)
        self.stats = LinkStats()
        self.inbox: queue.Queue[Message] = queue.Queue(maxsize=INBOX_SIZE)
        self.outbox: queue.Queue[SendBatch] = queue.Queue(maxsize=OUTBOX_SIZE)
        self.ctx: zmq.Context | None = None
        self.sender: Sender | None = None
        self.receiver: Receiver | None = None
        self.clock: EmulatedClock | None = None
        self.metrics_file = None
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
        """Load the shard, build the model, bind the inbound socket; returns its endpoint."""
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
        momentum = getattr(spec.algorithm, "momentum", 0.0)  # local momentum (RelaySGD)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=spec.algorithm.lr, momentum=momentum
        )
        algorithm_cls, _ = ALGORITHMS[spec.algorithm.name]
        layer_sizes = tuple(p.numel() for p in self.model.parameters())
        ctx = NodeContext(
            node_id=spec.node_id,
            num_nodes=spec.num_nodes,
            layer_sizes=layer_sizes,
            rng=random.Random(spec.seed * 1_000_003 + spec.node_id),
            partition_seed=spec.data.partition_seed,
            now=self._now,
        )
        self.algorithm = algorithm_cls(spec.algorithm, ctx)
        if hasattr(self.algorithm, "init"):  # optional: the initial model (RelaySGD's fill)
            self.algorithm.init(self.flat)
        (self.run_dir / "snapshots").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "nodes").mkdir(parents=True, exist_ok=True)
        self.metrics_file = open(self.run_dir / "nodes" / f"{spec.node_id:03d}.jsonl", "a")

        self.ctx = zmq.Context(io_threads=1)
        link = spec.link
        self.receiver = Receiver(
            self.ctx,
            spec.node_id,
            f"{spec.bind}:0",
            Downlink(link.down_mbps * 1e6, link.latency_ms / 1000, clock=self._now),
            None,
            self.inbox,
            self.stop,
            self.stats,
            spec.max_message_bytes,
        )
        self.receiver.start()
        if not self.receiver.bound.wait(10.0) or self.receiver.endpoint is None:
            raise RuntimeError(
                f"node {spec.node_id}: inbound socket did not bind: {self.receiver.error}"
            )
        return self.receiver.endpoint

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
        """Open a connection to every peer; sending waits for `start`."""
        self.peers = {p: ep for p, ep in peers.items() if p != self.spec.node_id}
        uplink = TokenBucket(self.spec.link.up_mbps * 1e6, clock=self._now)
        paths = {
            dst: TokenBucket(mbps * 1e6, clock=self._now)
            for dst, mbps in self.spec.link.paths.items()
            if dst in self.peers
        }
        self.sender = Sender(
            self.ctx,
            self.spec.node_id,
            self.peers,
            uplink,
            None,
            self.outbox,
            self.stop,
            self.stats,
            paths=paths,
        )
        self.sender.start()
        if not self.sender.connected.wait(30.0):
            raise RuntimeError(f"node {self.spec.node_id}: could not connect: {self.sender.error}")

    def start(self, t0: float, tdf: float) -> None:
        """Arm the shared clock: training begins at emulated 0, i.e. wall `t0`."""
        self.clock = EmulatedClock(t0, tdf)
        self.sender.start_clock(self.clock)
        self.receiver.start_clock(self.clock, frozenset(self.peers))

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
            self._log(
                {
                    "t": round(deadline, 6),  # this node's emulated time; lag is separate
                    "round": round_,
                    "train_loss": float(np.mean(losses)),
                    # CPU seconds this thread spent per local step, exchange included
                    "cpu_per_step": (time.thread_time() - cpu_start) / len(losses),
                    "received": received,
                    "behind_max": round(behind_round, 6),
                    **merge,
                    **self.stats.totals(),
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
        count = 0
        while True:
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return count
            count += 1
            try:
                replies = self.algorithm.on_message(msg, self.flat)
            except ValueError:
                self.counters["rejected_messages"] += 1
                continue
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
            if now > give_up:
                self.counters["ready_misses"] += 1
                break
            self.stop.wait(0.001)
            received += self._drain()
        return received

    def _send(self, outgoing: list[Outgoing], replace: bool) -> None:
        if not outgoing and not replace:
            return
        node, messages = self.spec.node_id, []
        for out in outgoing:
            messages.append(
                Message(
                    out.kind,
                    node,
                    out.dst,
                    self.counters["rounds"],
                    out.frag,
                    (out.values,),
                    out.aux,
                )
            )
        try:
            self.outbox.put(SendBatch(tuple(messages), replace), timeout=1.0)
        except queue.Full:
            self.counters["outbox_overflow"] += len(messages)

    def _snapshot(self, t: float) -> None:
        name = f"n{self.spec.node_id:03d}_t{round(t * 1000):09d}.npy"
        write_atomic(self.run_dir / "snapshots" / name, self.settled.numpy())

    def _log(self, record: dict) -> None:
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()

    def _progress(self, round_: int, deadline: float) -> dict:
        return {
            "type": "progress",
            "node": self.spec.node_id,
            "t": deadline,
            "round": round_,
            "behind_max": self.counters["behind_max"],
            **self.stats.totals(),
        }

    def final_report(self) -> dict:
        errors = [str(t.error) for t in (self.sender, self.receiver) if t and t.error]
        return {
            "type": "done",
            "node": self.spec.node_id,
            **self.counters,
            **self.stats.totals(),
            "links": self.stats.per_peer(),
            "thread_errors": errors,
        }

    def close(self) -> None:
        """Stop the threads, close sockets in their owner threads, then terminate the context."""
        self.stop.set()
        threads = [t for t in (self.sender, self.receiver) if t is not None]
        for thread in threads:
            thread.join(timeout=5.0)
        if self.metrics_file is not None:
            self.metrics_file.close()
        # term() waits for every socket to close; a thread that never exited would hang it.
        if self.ctx is not None and not any(t.is_alive() for t in threads):
            self.ctx.term()
