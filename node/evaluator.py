"""Low-priority evaluator process: tests the nodes' snapshots off the critical path."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import torch

from node import control
from node.data import task as data_task
from node.files import JsonlWriter
from node.models import build_model, flatten_parameters
from node.spec import DataSpec
from node.torch_setup import configure_torch_for_evaluation
from transport.control_channel import ControlAddress, ControlClient

SNAPSHOT = re.compile(r"n(\d{3})_t(\d{9})\.npy$")
IDLE_POLL = 0.2


def pending_snapshots(folder: Path, worker: int, num_workers: int) -> list[tuple[float, int, Path]]:
    """This worker's snapshots, oldest emulated time first so curves fill in evenly."""
    found = []
    for path in folder.glob("n*_t*.npy"):
        match = SNAPSHOT.match(path.name)
        if match and int(match.group(1)) % num_workers == worker:
            found.append((int(match.group(2)) / 1000, int(match.group(1)), path))
    return sorted(found)


def run_evaluator(
    worker: int,
    num_workers: int,
    run_dir: str,
    model_name: str,
    model_dims: dict,
    data: DataSpec,
    num_nodes: int,
    threads: int,
    address: ControlAddress,
    keep: bool = False,
) -> None:
    """Evaluate snapshots as they appear; after Finish, drain what is left and exit.
    Evaluated snapshots are deleted, or moved to `snapshots/kept/` when `keep` is set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Nodes keep the CPU; evaluation only takes what they leave idle. Nice 19 was not enough:
    # measured here, evaluators at nice 19 made 60 nodes lag at a factor they kept up at
    # without them. SCHED_IDLE runs only when nothing else wants the core.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    configure_torch_for_evaluation(threads)
    test = data_task(data.name).tester(data, num_nodes)
    model = build_model(model_name, 0, **model_dims)
    flat = flatten_parameters(model)
    folder = Path(run_dir) / "snapshots"
    if keep:
        (folder / "kept").mkdir(exist_ok=True)
    out = JsonlWriter(Path(run_dir) / "eval" / f"worker{worker}.jsonl")
    finishing, conn = False, ControlClient(address)
    try:
        while True:
            batch = pending_snapshots(folder, worker, num_workers)
            message = control.receive(conn, 0 if batch else IDLE_POLL)
            if isinstance(message, control.Stop):
                return
            finishing = finishing or isinstance(message, control.Finish)
            if not batch:
                # Nodes have all exited before Finish is sent, so an empty folder is final.
                if finishing and not pending_snapshots(folder, worker, num_workers):
                    control.send(conn, control.EvaluatorDone(worker))
                    return
                continue
            for t, node, path in batch[:64]:
                try:
                    flat.copy_(torch.from_numpy(np.load(path, allow_pickle=False)))
                except (OSError, ValueError):
                    continue  # a snapshot being replaced right now: picked up next pass
                evaluated = control.Evaluated(node, t, test(model, node))
                out.write(evaluated.record())
                if keep:
                    path.replace(folder / "kept" / path.name)
                else:
                    path.unlink(missing_ok=True)
                control.send(conn, evaluated)
    finally:
        conn.close()
        out.close()
