"""The Ray actors of a run: a node (its own worker process, running the same node entry as a
local process) and a machine's compute gate. Kept apart from the backend so that a worker
loads only what its actor needs (the gate's worker never imports torch)."""

from __future__ import annotations

import dataclasses
import os

import ray

NODE_IP = "node-ip"  # in transport.bind (tcp://node-ip) and launch.host: the machine's address


@ray.remote
class NodeActor:
    """One emulated node: `where` tells the launcher its machine, `run` is the node's life."""

    def where(self) -> dict:
        return {
            "pid": os.getpid(),
            "ray_node": ray.get_runtime_context().get_node_id(),
            "ip": ray.util.get_node_ip_address(),
        }

    def run(self, spec, address) -> int:
        """The node's exit code; its outcome reaches the launcher through `address`."""
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(spec.threads)  # before torch loads, as the forkserver does
        import node.preload  # noqa: F401  (what a local node finds loaded in its forkserver)
        from node.entry import run_node

        if spec.bind == f"tcp://{NODE_IP}":  # this machine's address, as Ray knows it
            spec = dataclasses.replace(spec, bind=f"tcp://{ray.util.get_node_ip_address()}")
        try:
            run_node(spec, address)
        except SystemExit as exc:  # a failure, already reported as Failed
            return int(exc.code or 0)
        return 0


@ray.remote
class GateActor:
    """A machine's compute gate: nodes on it compute `slots` at a time."""

    def start(self, slots: int) -> str:
        from transport.gate import GateServer

        self.gate = GateServer(slots)
        return self.gate.start_and_bind()

    def forget(self, node: int) -> None:
        self.gate.forget(node)
