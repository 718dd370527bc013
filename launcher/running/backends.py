"""Where a run's node processes start and how they stop: OS processes on this host from a
torch-preloaded forkserver (`local`), or one Ray actor per node on a cluster (`ray`,
launcher.running.ray_backend). Both drive their processes through the same control channel;
the launch sees each node as a process handle (exitcode, is_alive, kill, join) and its
channel."""

from __future__ import annotations

import os

from launcher.config.plan import Plan
from launcher.running.calibration import Hosts
from launcher.running.processes import forkserver_context, start_evaluators, start_node, start_nodes
from transport import GateServer
from transport.control_channel import ControlServer


class LocalBackend:
    """One OS process per node and per evaluator on this host; the host's compute gate (nodes
    computing at once, `compute.gate_slots`) runs in the launcher."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.ctx = forkserver_context(plan.run.threads)
        self.gate: GateServer | None = None

    def hosts(self) -> Hosts:
        """Every node on this one machine, with the cores this process may use."""
        return Hosts.one([spec.node_id for spec in self.plan.nodes], len(os.sched_getaffinity(0)))

    def control_host(self) -> str:
        return self.plan.run.host

    def start_evaluators(self, control: ControlServer) -> dict:
        return start_evaluators(self.ctx, self.plan, control)

    def start_nodes(self, control: ControlServer) -> dict:
        return start_nodes(self.ctx, self.plan, control)

    def start_node(self, spec, control: ControlServer):
        """A node's new process (one joining again after a crash)."""
        return start_node(self.ctx, spec, control)

    def start_gates(self) -> dict[int, str | None]:
        """Each node's compute gate endpoint (None: no gate); one gate for this host."""
        endpoint = None
        if self.plan.run.gate_slots > 0:
            self.gate = GateServer(self.plan.run.gate_slots)
            endpoint = self.gate.start_and_bind()
        return {spec.node_id: endpoint for spec in self.plan.nodes}

    def record_evaluation(self, worker: int, record: dict) -> None:
        """Nothing: local evaluators write their results into the run folder themselves."""

    def forget(self, node: int) -> None:
        """`node` is dead: a gate slot it held must not block the rest."""
        if self.gate is not None:
            self.gate.forget(node)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.close()


def make_backend(plan: Plan):
    if plan.run.backend == "ray":
        from launcher.running.ray_backend import RayBackend  # Ray is an optional extra

        return RayBackend(plan)
    return LocalBackend(plan)
