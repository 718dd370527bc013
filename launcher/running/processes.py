"""The OS processes of a run: a torch-preloaded forkserver, one process per node and per
evaluator, each with its control channel to the launcher, their memory, and their reaping."""

from __future__ import annotations

import multiprocessing as mp
import os

import psutil

from launcher.config.plan import Plan
from node import control
from node.entry import run_node
from node.evaluator import run_evaluator
from transport.control_channel import Channel, ControlServer


def forkserver_context(threads: int) -> mp.context.BaseContext:
    # The forkserver inherits this environment: set thread counts before it imports torch.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["node.preload"])
    return ctx


def measure_pss(processes: dict[int, mp.Process]) -> dict[int, float]:
    """Proportional set size per process: shared torch pages are split among the sharers."""
    pss = {}
    for node, proc in processes.items():
        try:
            pss[node] = psutil.Process(proc.pid).memory_full_info().pss / 2**20
        except (psutil.Error, ValueError):
            pass
    return pss


def start_evaluators(
    ctx, plan: Plan, control: ControlServer
) -> dict[int, tuple[mp.Process, Channel]]:
    """The evaluator processes (niced), each testing its share of the nodes' snapshots."""
    run, started = plan.run, {}
    for w in range(run.eval_workers):
        channel = control.channel(f"e{w}")
        proc = ctx.Process(
            target=run_evaluator,
            name=f"evaluator-{w}",
            args=(
                w,
                run.eval_workers,
                str(plan.run_dir),
                run.model,
                plan.model_dims,
                run.dataset,
                run.num_nodes,
                1,
                control.address(f"e{w}"),
                run.keep_snapshots,
            ),
        )
        proc.start()
        started[w] = (proc, channel)
    return started


def start_nodes(ctx, plan: Plan, control: ControlServer) -> dict[int, tuple[mp.Process, Channel]]:
    """One process per node, each with its control channel to the launcher."""
    return {spec.node_id: start_node(ctx, spec, control) for spec in plan.nodes}


def start_node(ctx, spec, control: ControlServer) -> tuple[mp.Process, Channel]:
    """One node's process and the launcher's view of it (what an earlier process of the same
    node sent, and the launcher did not read, is dropped)."""
    name = f"n{spec.node_id}"
    channel = control.channel(name)
    proc = ctx.Process(target=run_node, args=(spec, control.address(name)), name=f"node-{name}")
    proc.start()
    return proc, channel


def reap(procs, grace: float) -> None:
    """Join each process, killing one still alive after `grace` wall seconds."""
    for proc in procs:
        proc.join(timeout=grace)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


class CrashSchedule:
    """A scenario's crashes, for the launcher to carry out: `due(t)` hands out the nodes whose
    crash has come by emulated `t`, once each; pure, on whatever time it is given."""

    def __init__(self, actions=()):
        self.pending = sorted(a for a in actions if a.kind == "crash")

    def due(self, t: float) -> list[int]:
        nodes = []
        while self.pending and self.pending[0].t <= t:
            nodes.append(self.pending.pop(0).node)
        return nodes

    def next_at(self) -> float:
        return self.pending[0].t if self.pending else float("inf")


def tell(conns: dict, message) -> None:
    """`message` to every process still connected (a dead process's channel is not an error)."""
    for conn in list(conns.values()):
        try:
            control.send(conn, message)
        except (OSError, ValueError):
            pass
