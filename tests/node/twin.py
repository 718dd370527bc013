"""Runs real `Node`s, planned from the real config, in one process: the in-memory transport on
a virtual clock, one thread per node. No sockets, no wall clock: every run is deterministic."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from launcher.config.plan import Plan, make_plan
from launcher.config.schema import validate
from launcher.main import CONF_DIR
from node.algorithms import load_algorithm
from node.algorithms.adpsgd import ADPSGD
from node.algorithms.base import (
    Algorithm,
    AlgorithmConfig,
    Incoming,
    Outgoing,
    Rejected,
    model_values,
    uniform_mean,
)
from node.files import read_jsonl
from node.runtime import Node
from node.torch_setup import configure_torch
from transport import MemoryNetwork, Reachability, VirtualClock


def plan(run_dir: Path, data_root: Path, *overrides: str) -> Plan:
    """The launcher's own plan for `overrides` (hydra's syntax), as `python -m launcher` would
    make it; the data set is prepared under `data_root`."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"data_root={data_root}", *overrides])
    run = validate(OmegaConf.to_container(cfg, resolve=True))
    return make_plan(run, Path(run_dir))


@dataclass
class Twin:
    """What the nodes of one run did, once every thread has ended."""

    nodes: dict[int, Node]
    network: MemoryNetwork
    errors: dict[int, BaseException] = field(default_factory=dict)

    def records(self, node: int) -> list[dict]:
        """The node's per-round metrics, as written to nodes/NNN.jsonl."""
        return read_jsonl(self.nodes[node].run_dir / "nodes" / f"{node:03d}.jsonl")

    def stats(self, node: int):
        return self.nodes[node].transport.stats


@contextlib.contextmanager
def torch_as_in_a_node(spec):
    """Thread count and oneDNN as a node process sets them: the bits depend on both."""
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    configure_torch(spec.threads, spec.model)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn


def run(plan: Plan, timeout: float = 120.0) -> Twin:
    """Set every node up, connect them all, start them at emulated 0 and run them to the end."""
    with torch_as_in_a_node(plan.nodes[0]):
        return _run(plan, timeout)


def _run(plan: Plan, timeout: float) -> Twin:
    clock = VirtualClock()
    network = MemoryNetwork(clock, reach=Reachability(plan.nodes[0].scenario))
    nodes = {}
    for spec in plan.nodes:
        stop = threading.Event()
        kinds = load_algorithm(spec.algorithm_class).kinds
        transport = network.transport(spec.node_id, spec.link, kinds, stop)
        nodes[spec.node_id] = Node(spec, transport, stop)
    twin = Twin(nodes, network)
    try:
        endpoints = {node_id: node.setup() for node_id, node in nodes.items()}
        for node in nodes.values():
            node.connect(endpoints)
            node.start(clock)
            clock.join()  # all join before any runs: time must not move without one of them

        def run_one(node_id: int, node: Node) -> None:
            try:
                node.run()
            except BaseException as exc:  # the test asserts on it
                twin.errors[node_id] = exc
            finally:
                clock.leave()

        threads = [
            threading.Thread(target=run_one, args=item, name=f"twin-{item[0]}", daemon=True)
            for item in nodes.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout)
        hung = [t.name for t in threads if t.is_alive()]
        if hung:
            raise TimeoutError(f"{hung} still running after {timeout} s")
    finally:
        for node in nodes.values():
            node.close()
    return twin


# ---- algorithms for the tests, loaded by `_target_` as any plug-in ---------------------------
class Recorder(Algorithm):
    """Sends its model to every peer at each round boundary and records, for every delivery,
    the emulated instant it was handed to the algorithm; averages what came in."""

    kinds = frozenset({"model"})

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.received: list[tuple[float, int, int]] = []  # (now, src, round)
        self.models = {}

    def round_messages(self, round, params):
        return [Outgoing(peer, "model", params.clone().numpy()) for peer in self.ctx.peers]

    def on_message(self, msg: Incoming, params):
        self.received.append((self.ctx.now(), msg.src, msg.round))
        self.models[msg.src] = model_values(msg, self.ctx.model_size)
        return []

    def aggregate(self, round, params):
        params.copy_(uniform_mean(params, list(self.models.values())))
        merged, self.models = len(self.models), {}
        return {"models_merged": merged}


class RoundRecorder(Recorder):
    """A Recorder whose messages only count at round boundaries: rounds compute at once."""

    merges_at = "round"


class PongRecorder(ADPSGD):
    """AD-PSGD recording (now, kind, src, sent_at) of every message it merges."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.merged: list[tuple[float, str, int, float]] = []

    def on_message(self, msg: Incoming, params):
        self.merged.append((self.ctx.now(), msg.kind, msg.src, msg.sent_at))
        return super().on_message(msg, params)


class Picky(Recorder):
    """Refuses every message from node 0 (counted) and treats one from node 2 as a bug."""

    def on_message(self, msg: Incoming, params):
        if msg.src == 0:
            raise Rejected("not from node 0")
        if msg.src == 2:
            raise ValueError("a bug in the algorithm, not a refusal")
        return super().on_message(msg, params)


class Chatty(Recorder):
    """Sends a kind it did not declare."""

    def round_messages(self, round, params):
        return [Outgoing(peer, "gossip", params.clone().numpy()) for peer in self.ctx.peers]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TypedConfig(AlgorithmConfig):
    """Field types a plug-in may use, with nothing written for them anywhere else."""

    flag: bool = False
    ids: list[int] = dataclasses.field(default_factory=list)
    limit: float | None = None


class Typed(Recorder):
    config_class = TypedConfig


class Stubborn(Recorder):
    """Node 1 never ends its third round: its training thread never waits again."""

    merges_at = "round"

    def aggregate(self, round, params):
        while self.ctx.node_id == 1 and round == 2:
            time.sleep(0.05)
        return super().aggregate(round, params)


class NeverReady(Recorder):
    """Node 1 never finishes setting up: it blocks in `init`, before it could say Ready."""

    def init(self, params):
        while self.ctx.node_id == 1:
            time.sleep(0.05)
