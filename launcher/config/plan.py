"""Plans a run: the data set prepared once, then one NodeSpec per node."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from launcher.config.schema import RunConfig
from node.data import task as data_task
from node.spec import NodeSpec
from transport.dynamics import REACHABILITY, crash_rejoins
from transport.security import CurveKeys


@dataclass(frozen=True)
class Plan:
    run: RunConfig
    run_dir: Path
    nodes: tuple[NodeSpec, ...]
    model_dims: dict


def make_plan(run: RunConfig, run_dir: Path) -> Plan:
    """Prepares the data set once, here, before any process starts: downloads or caches it,
    or raises DataError saying how to provide it; then one spec per node."""
    task = data_task(run.dataset.name)
    task.prepare(run.dataset)
    bind = run.bind
    if bind == "ipc://":  # a short private folder: a Unix socket's path has 107 bytes at most
        bind = f"ipc://{tempfile.mkdtemp(prefix='dlemu-')}"
    model_dims = task.model_dims(run.dataset)
    curve = CurveKeys.generate() if run.curve else None
    reachability = tuple(a for a in run.scenario if a.kind in REACHABILITY)
    # A node back from a crash with the model it had reads it from its checkpoint.
    keep = {a.node for a in crash_rejoins(run.scenario) if a.values.get("model") == "kept"}
    nodes = tuple(
        NodeSpec(
            node_id=i,
            num_nodes=run.num_nodes,
            seed=run.seed,
            run_dir=str(run_dir),
            algorithm=run.algorithm,
            algorithm_class=run.algorithm_class,
            model=run.model,
            model_dims=model_dims,
            data=run.dataset,
            link=run.network.links[i],
            step_time=run.step_times[i],
            duration=run.duration,
            eval_interval=run.eval_interval,
            threads=run.threads,
            pace=run.pace,
            pacing=run.pacing,
            clock=run.clock,
            bind=bind,
            max_message_bytes=run.max_message_bytes,
            max_connections=run.max_connections,
            scenario=reachability,
            checkpoint=i in keep,
            curve=curve,
            sharing=run.sharing,
            timeline=run.timeline.max_events if run.timeline else 0,
        )
        for i in range(run.num_nodes)
    )
    return Plan(run=run, run_dir=run_dir, nodes=nodes, model_dims=model_dims)
