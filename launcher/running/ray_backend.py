"""The Ray backend: one long-lived Ray actor per node, each its own OS process, placed by a
placement group over the cluster's machines (spread or pack); an evaluator and a compute gate
per machine; the launcher drives the actors through the same control channel as local
processes. No filesystem is shared: what the run folder needs comes back from the actors."""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from launcher.config.plan import Plan
from launcher.running.calibration import Hosts
from launcher.running.outcome import StartupError
from launcher.running.ray_actors import NODE_IP, EvaluatorActor, GateActor, NodeActor
from node.files import JsonlWriter, write_atomic, write_json_atomic
from transport.control_channel import ControlServer
from transport.security import LOOPBACK_HOSTS

log = logging.getLogger(__name__)
KILLED = -9  # an actor killed, or lost with its machine: as a process killed by SIGKILL
PROBE_TIMEOUT = 5.0  # wall seconds for the cluster's head to accept a connection


class ActorProcess:
    """A node's actor as the launch sees a local process: `exitcode` (None while it runs),
    `kill`, `join`; `exit_reason` says how it ended when that was not its own doing."""

    def __init__(self, actor, run, where: dict, run_dir: Path):
        self.actor, self.run, self.run_dir = actor, run, run_dir
        self.pid, self.ray_node, self.ip = where["pid"], where["ray_node"], where["ip"]
        self.code: int | None = None
        self.exit_reason: str | None = None

    @property
    def exitcode(self) -> int | None:
        if self.code is None and ray.wait([self.run], timeout=0)[0]:
            self._finish()
        return self.code

    def _finish(self) -> None:
        try:
            result = ray.get(self.run)
            self.code = result["code"]
            self._write(result["files"])
        except ray.exceptions.RayActorError as err:
            self.code = KILLED
            if self.ray_node not in machine_cpus():
                self.exit_reason = (
                    f"its machine was lost (Ray node {self.ray_node[:12]}, {self.ip})"
                )
            else:
                self.exit_reason = f"its Ray actor died: {type(err).__name__}"
        except ray.exceptions.RayTaskError as err:
            self.code, self.exit_reason = 1, str(err).strip().splitlines()[-1]
        except ray.exceptions.RayError as err:  # its result lost with its owner, or the like
            self.code, self.exit_reason = 1, f"{type(err).__name__}: {err}"

    def _write(self, files: dict[str, bytes]) -> None:
        """What the actor returned of its machine's folder, into the run folder."""
        root = self.run_dir.resolve()
        for name, content in files.items():
            path = (root / name).resolve()
            if root not in path.parents:  # only ever a name made by ray_actors.read_files
                raise ValueError(f"{name!r} is not inside the run folder")
            write_atomic(path, lambda f, content=content: f.write(content))

    def is_alive(self) -> bool:
        return self.exitcode is None

    def terminate(self) -> None:
        """Nothing: a node is stopped by the launcher's Stop on its control channel."""

    def kill(self) -> None:
        ray.kill(self.actor, no_restart=True)

    def join(self, timeout: float | None = None) -> None:
        ray.wait([self.run], timeout=timeout)

    def close(self) -> None:
        """Nothing to free here: the actor is gone with its process."""


def machine_cpus() -> dict[str, float]:
    """The CPUs of each machine (Ray node) of the cluster still alive, by Ray node id."""
    return {n["NodeID"]: n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]}


def reachable(address: str, timeout: float = PROBE_TIMEOUT) -> None:
    """A head at HOST:PORT answers a TCP connection (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as err:
        raise StartupError(
            f"no Ray cluster answers at ray.address={address} ({err}): start its head with "
            "'ray start --head', check the address, or use ray.address=local"
        ) from err


def check_reachable(host: str, bind: str, here: str, ips: set[str]) -> None:
    """Nodes on other machines (`ips`) than the launcher's (`here`) cannot reach a loopback
    address: the launcher's control socket (`launch.host`) or each other (`transport.bind`)."""
    if ips <= {here}:
        return
    for key, value, fix in (
        ("launch.host", host, "node-ip"),
        ("transport.bind", bind, "tcp://node-ip"),
    ):
        if value.removeprefix("tcp://").startswith(LOOPBACK_HOSTS):
            elsewhere = ", ".join(sorted(ips - {here}))
            raise StartupError(
                f"{key}={value} cannot be reached from the machines at {elsewhere}: use {key}={fix}"
            )


def start_up(refs: list, timeout: float, what: str) -> list:
    """The results of start-up calls to actors, or a StartupError saying `what` failed."""
    try:
        return ray.get(refs, timeout=timeout)
    except (ray.exceptions.RayError, TimeoutError) as err:
        raise StartupError(f"{what}: {type(err).__name__}: {err}") from err


class RayBackend:
    """Connects to (or starts) a Ray cluster, reserves one bundle of `ray.cpus_per_node` CPUs
    per node in a placement group, and starts each node's actor in its bundle."""

    def __init__(self, plan: Plan):
        self.plan, self.settings = plan, plan.run.ray
        self.pg = None
        self.run_id = uuid.uuid4().hex[:12]  # names each machine's scratch folder
        self.actors: dict[int, ActorProcess] = {}
        self.gates: dict[str, object] = {}  # Ray node id -> its GateActor
        self.bundle_nodes: list[str] = []
        self.results: dict[int, JsonlWriter] = {}  # evaluator -> its results in the run folder
        self._connect()

    def _connect(self) -> None:
        address, n = self.settings.address, len(self.plan.nodes)
        # A Ray instance of the run's own declares enough CPUs for every node's bundle: nodes
        # share this host's cores as local processes do.
        local = {"num_cpus": max(1, int(n * self.settings.cpus_per_node + 0.999))}
        if address not in ("local", "auto"):
            reachable(address)
        try:
            ray.init(
                address=None if address == "local" else address,
                include_dashboard=False,
                configure_logging=False,
                **(local if address == "local" else {}),
            )
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise StartupError(
                f"cannot reach the Ray cluster at ray.address={address}: {err} (start one with "
                "'ray start --head', or use ray.address=local)"
            ) from err
        log.info("Ray cluster: %s", ray.cluster_resources())

    def hosts(self) -> Hosts:
        """Which machine (Ray node) holds each node, and each machine's CPUs as Ray counts
        them: the calibration judges the busiest machine."""
        cpus = machine_cpus()
        machine_of = {
            spec.node_id: m for spec, m in zip(self.plan.nodes, self.bundle_nodes, strict=True)
        }
        return Hosts(machine_of, {m: max(1, int(cpus.get(m, 1))) for m in set(self.bundle_nodes)})

    def control_host(self) -> str:
        host = self.plan.run.host
        return ray.util.get_node_ip_address() if host == NODE_IP else host

    def _place(self) -> None:
        """One bundle of `ray.cpus_per_node` CPUs per node, placed by the strategy."""
        n, cpus = len(self.plan.nodes), self.settings.cpus_per_node
        machines = list(machine_cpus().values())
        cannot = StartupError(
            f"the Ray cluster cannot place {n} nodes of {cpus} CPU each (its machines have "
            f"{', '.join(f'{c:g}' for c in machines)} CPUs): lower ray.cpus_per_node, or add "
            "machines"
        )
        if sum(int(c // cpus) for c in machines) < n:  # no bundle is split across machines
            raise cannot
        self.pg = placement_group([{"CPU": cpus}] * n, strategy=self.settings.strategy)
        ready, _ = ray.wait([self.pg.ready()], timeout=self.plan.run.start_timeout)
        if not ready:  # CPUs others hold, or machines gone meanwhile
            raise cannot
        table = placement_group_table(self.pg)["bundles_to_node_id"]
        self.bundle_nodes = [table[i] for i in range(n)]
        machines = len(set(self.bundle_nodes))
        log.info("%d nodes placed on %d Ray nodes (%s)", n, machines, self.settings.strategy)

    def _on(self, machine: str):
        return NodeAffinitySchedulingStrategy(machine, soft=False)

    def start_evaluators(self, control: ControlServer) -> dict:
        """An evaluator on each machine that holds nodes, the data set prepared there first."""
        self._place()
        run, plan = self.plan.run, self.plan
        machines = sorted(set(self.bundle_nodes))
        actors = [
            EvaluatorActor.options(num_cpus=0, scheduling_strategy=self._on(m)).remote()
            for m in machines
        ]
        wait = run.start_timeout
        start_up([a.prepare.remote(run.dataset) for a in actors], wait, "preparing the data set")
        wheres = start_up([a.where.remote() for a in actors], wait, "starting the evaluators")
        started, args = {}, (run.model, plan.model_dims, run.dataset, run.num_nodes, 1)
        for w, (actor, where) in enumerate(zip(actors, wheres, strict=True)):
            channel, address = control.channel(f"e{w}"), control.address(f"e{w}")
            ref = actor.run.remote(w, self.run_id, args, address, run.keep_snapshots)
            started[w] = (ActorProcess(actor, ref, where, plan.run_dir), channel)
        return started

    def start_nodes(self, control: ControlServer) -> dict:
        actors = [self._actor(i) for i in range(len(self.plan.nodes))]
        run = self.plan.run  # every worker starts at once:
        wheres = start_up([a.where.remote() for a in actors], run.start_timeout, "starting nodes")
        ips = {w["ip"] for w in wheres}
        check_reachable(run.host, run.bind, ray.util.get_node_ip_address(), ips)
        # For operators and tests: which machine (Ray node) and process holds each node
        placement = {str(spec.node_id): w for spec, w in zip(self.plan.nodes, wheres, strict=True)}
        write_json_atomic(self.plan.run_dir / "placement.json", placement)
        return {
            spec.node_id: self._run(actor, where, spec, control)
            for spec, actor, where in zip(self.plan.nodes, actors, wheres, strict=True)
        }

    def _actor(self, bundle: int):
        strategy = PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=bundle)
        return NodeActor.options(
            num_cpus=self.settings.cpus_per_node, scheduling_strategy=strategy
        ).remote()

    def _run(self, actor, where: dict, spec, control: ControlServer):
        name = f"n{spec.node_id}"
        channel = control.channel(name)
        run = actor.run.remote(spec, control.address(name), self.run_id)
        process = ActorProcess(actor, run, where, self.plan.run_dir)
        self.actors[spec.node_id] = process
        return process, channel

    def start_node(self, spec, control: ControlServer):
        """A node's new actor (one joining again after a crash), in the bundle its old one had."""
        actor = self._actor(spec.node_id)
        return self._run(actor, ray.get(actor.where.remote()), spec, control)

    def start_gates(self) -> dict[int, str | None]:
        """A compute gate on each machine that holds nodes (as many slots as it has CPUs when
        compute.gate_slots is auto); each node uses its machine's."""
        run = self.plan.run
        if run.gate_slots == 0:
            return {spec.node_id: None for spec in self.plan.nodes}
        cores = self.hosts().cores
        for machine in set(self.bundle_nodes):
            on = self._on(machine)
            self.gates[machine] = GateActor.options(num_cpus=0, scheduling_strategy=on).remote()
        slots = {m: cores[m] if run.gate_slots_auto else run.gate_slots for m in self.gates}
        starts = [gate.start.remote(slots[m]) for m, gate in self.gates.items()]
        started = start_up(starts, run.start_timeout, "starting the compute gates")
        endpoints = dict(zip(self.gates, started, strict=True))
        return {
            spec.node_id: endpoints[machine]
            for spec, machine in zip(self.plan.nodes, self.bundle_nodes, strict=True)
        }

    def record_evaluation(self, worker: int, record: dict) -> None:
        """Each result into the run folder as it arrives: a machine lost later loses none."""
        if worker not in self.results:
            self.results[worker] = JsonlWriter(self.plan.run_dir / "eval" / f"worker{worker}.jsonl")
        self.results[worker].write(record)

    def forget(self, node: int) -> None:
        gate = self.gates.get(self.actors[node].ray_node) if node in self.actors else None
        if gate is not None:
            gate.forget.remote(node)

    def close(self) -> None:
        """Every actor killed (the launch has stopped them already), the reservation freed."""
        for process in self.actors.values():
            if process.code is None:
                ray.kill(process.actor, no_restart=True)
        for gate in self.gates.values():
            ray.kill(gate, no_restart=True)
        if self.pg is not None:
            remove_placement_group(self.pg)
        for results in self.results.values():
            results.close()
        ray.shutdown()
