"""The Ray actors of a run: a node (its own worker process, running the same node entry as a
local process), a machine's evaluator and its compute gate. No filesystem is shared: each
machine's nodes and evaluator work in a scratch folder of that machine; the node metrics and
kept snapshots return to the launcher at the end, evaluation results one by one. Kept apart
from the backend so that a worker loads only what its actor needs (the gate's worker never
imports torch)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import ray

NODE_IP = "node-ip"  # in transport.bind (tcp://node-ip) and launch.host: the machine's address


def scratch(run_id: str) -> Path:
    """This machine's folder for the run (one per Ray node, even when Ray nodes share a disk)."""
    machine = ray.get_runtime_context().get_node_id()[:12]
    return Path(tempfile.gettempdir()) / f"dlemu-{run_id}" / machine


def where() -> dict:
    return {
        "pid": os.getpid(),
        "ray_node": ray.get_runtime_context().get_node_id(),
        "ip": ray.util.get_node_ip_address(),
    }


def read_files(folder: Path, names) -> dict[str, bytes]:
    """{name relative to the run folder: content} of those of `names` that exist."""
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


@ray.remote
class NodeActor:
    """One emulated node: `where` tells the launcher its machine, `run` is the node's life."""

    def where(self) -> dict:
        return where()

    def run(self, spec, address, run_id: str) -> dict:
        """The node's exit code and its metrics file; its outcome reaches the launcher through
        `address` as it happens."""
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(spec.threads)  # before torch loads, as the forkserver does
        import node.preload  # noqa: F401  (what a local node finds loaded in its forkserver)
        from node.entry import run_node

        if spec.bind == f"tcp://{NODE_IP}":  # this machine's address, as Ray knows it
            spec = dataclasses.replace(spec, bind=f"tcp://{ray.util.get_node_ip_address()}")
        folder = scratch(run_id)
        spec = dataclasses.replace(spec, run_dir=str(folder))
        code = 0
        try:
            run_node(spec, address)
        except SystemExit as exc:  # a failure, already reported as Failed
            code = int(exc.code or 0)
        return {"code": code, "files": read_files(folder, [f"nodes/{spec.node_id:03d}.jsonl"])}


@ray.remote
class EvaluatorActor:
    """A machine's evaluator: tests the snapshots its machine's nodes write, sends each result
    to the launcher (which writes it into the run folder), and at the end returns the kept
    snapshots."""

    def where(self) -> dict:
        return where()

    def prepare(self, data) -> None:
        """The data set on this machine, before its nodes load their shards (embedded data sets
        are generated here; a downloaded one must be in data_root on every machine)."""
        from node.data import task

        task(data.name).prepare(data)

    def run(self, worker: int, run_id: str, evaluator_args: tuple, address, keep: bool) -> dict:
        from node.evaluator import run_evaluator

        folder = scratch(run_id)
        (folder / "snapshots").mkdir(parents=True, exist_ok=True)
        code = 0
        try:  # every snapshot in this machine's folder is its own to test: worker 0 of 1
            run_evaluator(0, 1, str(folder), *evaluator_args, address, keep)
        except BaseException:  # noqa: BLE001 (reported by its exit code)
            code = 1
        kept = folder / "snapshots" / "kept"
        names = [f"snapshots/kept/{p.name}" for p in kept.glob("*.npy")] if keep else []
        files = read_files(folder, names)  # its results reached the launcher one by one
        shutil.rmtree(folder, ignore_errors=True)  # the nodes of this machine are done
        return {"code": code, "files": files}


@ray.remote
class GateActor:
    """A machine's compute gate: nodes on it compute `slots` at a time."""

    def start(self, slots: int) -> str:
        from transport.gate import GateServer

        self.gate = GateServer(slots)
        return self.gate.start_and_bind()

    def forget(self, node: int) -> None:
        self.gate.forget(node)
