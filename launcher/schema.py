"""Validates the composed hydra config into typed, frozen objects before any process starts."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from launcher.network import NetworkConfig, node_ids, plan_network
from launcher.report.metric import METRICS, Metric
from node.algorithms import AlgorithmConfig, load_algorithm
from node.config import DataSpec, number, require, section
from node.data import MODEL_DATASET, TASKS
from node.models import MODELS

# Keys every data set has; each data set names the keys it adds (another set's are refused).
DATASET_KEYS = frozenset({"name", "partition", "partition_seed"})


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    num_nodes: int
    duration: float
    seed: int
    tdf: float | None  # None = calibrate on this host
    lag_tolerance: float
    step_times: tuple[float, ...]  # per node, emulated seconds per local step
    threads: int
    pace: bool
    pacing: str  # "burst": a round computed at once when the algorithm allows it; "step"
    gate_slots: int  # nodes computing at once (the host's cores by default); 0: no gate
    calibration_margin: float
    calibration_rounds: int
    eval_interval: float
    targets: tuple[float, ...]
    eval_workers: int
    keep_snapshots: bool
    bind: str
    max_message_bytes: int
    max_connections: int
    start_timeout: float
    stop_grace: float
    progress_interval: float
    algorithm: AlgorithmConfig
    algorithm_class: str  # the dotted path of its Algorithm subclass (the YAML's _target_)
    model: str
    dataset: DataSpec
    network: NetworkConfig


def typed(config_class: type, values: dict, section: str):
    """`values` as a `config_class` instance: its defaults fill what is missing, every value is
    checked against the field's type (bool, list, optional... as OmegaConf's structured
    configs do), and the class's own `__post_init__` checks run."""
    known = sorted(f.name for f in fields(config_class))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(config_class), values)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        key = f"{section}.{err.full_key}"
        require(False, key, "unknown key", f"remove it; known keys of '{section}' are {known}")
    except MissingMandatoryValue as err:
        key = f"{section}.{err.full_key}"
        require(False, key, "missing", f"set {key} in the YAML or as {key}=VALUE")
    except ValidationError as err:
        name = re.split(r"[.\[]", err.full_key)[0]  # ids[0] is an element of field ids
        field_type = {f.name: f.type for f in fields(config_class)}.get(name, "?")
        problem = str(err).splitlines()[0]
        key = f"{section}.{err.full_key}"
        require(False, key, problem, f"give {section}.{name} a value of type {field_type}")


def _algorithm(cfg: dict, num_nodes: int) -> tuple[AlgorithmConfig, str]:
    """The algorithm's typed config and the dotted path of its class (`_target_`)."""
    algo = cfg.get("algorithm")
    require(isinstance(algo, dict), "algorithm", "missing or not a mapping", "use algorithm=NAME")
    target = algo.get("_target_")
    require(
        isinstance(target, str) and bool(target),
        "algorithm._target_",
        f"{target!r} does not name an algorithm class",
        "add e.g. '_target_: node.algorithms.divshare.DivShare' to the algorithm's YAML",
    )
    try:
        algorithm_class = load_algorithm(target)
    except (ImportError, TypeError) as err:
        require(
            False,
            "algorithm._target_",
            f"cannot load {target!r}: {err}",
            "check the dotted path; a plug-in's folder must be on hydra's search path, e.g. "
            "'hydra.searchpath=[file:///path/to/folder]', with the YAML in its algorithm/",
        )
    values = {k: v for k, v in algo.items() if k != "_target_"}
    config = typed(algorithm_class.config_class, values, "algorithm")
    config.check(num_nodes)  # the algorithm's own whole-run checks (e.g. its graph)
    return config, target


def _dataset(cfg: dict, num_nodes: int, cwd: str | None) -> DataSpec:
    """The dataset section: a known set, its own keys only, a partitioner it supports, and the
    set's own checks of its keys."""
    raw = cfg.get("dataset")
    name = raw.get("name") if isinstance(raw, dict) else None
    require(
        name in TASKS, "dataset.name", f"unknown data set {name!r}", f"use one of {list(TASKS)}"
    )
    task = TASKS[name]
    ds = section(cfg, "dataset", set(DATASET_KEYS | task.config_keys))
    require(
        ds.get("partition") in task.partitions,
        "dataset.partition",
        f"{ds.get('partition')!r} is not a partitioner of {name}",
        f"use one of {list(task.partitions)}",
    )
    root = Path(ds.get("root") or cfg.get("data_root") or "data")
    root = root if root.is_absolute() else Path(cwd or os.getcwd()) / root
    return DataSpec(
        name=name,
        root=str(root),
        partition=ds["partition"],
        partition_seed=number(ds, "partition_seed", "dataset.", kind=int, low=0),
        **task.spec_values(ds, num_nodes),
    )


def _targets(targets, metric: Metric, dataset: str) -> tuple[float, ...]:
    """eval.targets are values of the task's metric: accuracies, or RMSE values for MovieLens;
    auto: the metric's own."""
    if targets == "auto":
        return metric.default_targets
    targets = targets or []
    numbers = all(isinstance(t, int | float) and not isinstance(t, bool) for t in targets)
    if metric.bounded:
        ok, what, fix = numbers and all(0 < t <= 1 for t in targets), "accuracies in (0, 1]", ""
    else:
        ok, what = numbers and all(t > 0 for t in targets), f"{metric.name} values above 0"
        fix = f" (dataset {dataset} is judged on its test {metric.name}, lower is better)"
    example = "[0.5,0.8]" if metric.higher_is_better else "[1.2,1.0]"
    require(ok, "eval.targets", f"{targets!r} are not {what}{fix}", f"e.g. eval.targets={example}")
    return tuple(float(t) for t in targets)


def validate(cfg: dict, cwd: str | None = None) -> RunConfig:
    """Turn the composed config (a plain dict) into a RunConfig, or raise ConfigError."""
    top = {
        "num_nodes",
        "duration",
        "seed",
        "tdf",
        "lag_tolerance",
        "data_root",
        "compute",
        "eval",
        "transport",
        "launch",
        "algorithm",
        "network",
        "dataset",
        "model",
    }
    unknown = set(cfg) - top - {"hydra"}
    require(
        not unknown,
        sorted(unknown)[0] if unknown else "",
        "unknown key",
        f"remove it; known top-level keys are {sorted(top)}",
    )
    num_nodes = number(cfg, "num_nodes", "", kind=int, low=2, fix="num_nodes>=2 (N=4 in make)")
    duration = number(cfg, "duration", "", low=1e-3, fix="emulated seconds, e.g. duration=60")
    seed = number(cfg, "seed", "", kind=int, low=0)
    tdf = cfg.get("tdf")
    if tdf != "auto":
        tdf = number(cfg, "tdf", "", low=1.0, fix="tdf=auto, or a factor >= 1")
    else:
        tdf = None
    compute = section(
        cfg,
        "compute",
        {
            "step_time",
            "overrides",
            "threads",
            "calibration_margin",
            "calibration_rounds",
            "pace",
            "pacing",
            "gate_slots",
            "stragglers",
            "slowdown",
        },
    )
    pace = compute.get("pace", True)
    require(isinstance(pace, bool), "compute.pace", f"{pace!r} is not a boolean", "true or false")
    pacing = compute.get("pacing", "burst")
    require(
        pacing in ("burst", "step"),
        "compute.pacing",
        f"{pacing!r} is not a pacing",
        "burst (a round at once where the algorithm allows it) or step (every step paced)",
    )
    gate_slots = compute.get("gate_slots", "auto")
    if gate_slots == "auto":
        gate_slots = len(os.sched_getaffinity(0))
    gate_slots = number({"g": gate_slots}, "g", "compute.gate_slots", kind=int, low=0)
    step_time = number(compute, "step_time", "compute.", low=1e-6)
    step_times = [step_time] * num_nodes
    slow = node_ids(list(compute.get("stragglers") or []), "compute.stragglers", num_nodes)
    if slow:
        slowdown = number(
            compute, "slowdown", "compute.", low=1.0, fix="e.g. 5 for 5x slower steps"
        )
        for node in slow:
            step_times[node] = step_time * slowdown
    for node, value in (compute.get("overrides") or {}).items():
        key = f"compute.overrides.{node}"
        node_id = int(node) if str(node).isdigit() else -1
        require(0 <= node_id < num_nodes, key, "is not a node id", f"use 0..{num_nodes - 1}")
        step_times[node_id] = number({"v": value}, "v", key, low=1e-6)
    ev = section(cfg, "eval", {"interval", "targets", "workers", "keep_snapshots"})
    keep = ev.get("keep_snapshots", False)
    require(
        isinstance(keep, bool), "eval.keep_snapshots", f"{keep!r} is not a boolean", "true/false"
    )
    interval = number(ev, "interval", "eval.", low=1e-3)
    require(
        interval <= duration,
        "eval.interval",
        f"{interval} exceeds duration {duration}",
        "lower eval.interval or raise duration",
    )
    targets = ev.get("targets")
    workers = ev.get("workers")
    workers = (os.cpu_count() or 1) if workers in (None, "auto") else workers
    tr = section(cfg, "transport", {"bind", "max_message_bytes", "max_connections"})
    bind = tr.get("bind")
    require(
        bind == "ipc://" or (isinstance(bind, str) and bind.startswith("tcp://")),
        "transport.bind",
        f"{bind!r} is not an address nodes can bind on",
        "use ipc:// (one host: Unix sockets in a folder of the run's own) or tcp://127.0.0.1",
    )
    launch = section(cfg, "launch", {"start_timeout", "stop_grace", "progress_interval"})
    model = section(cfg, "model", {"name"}).get("name")
    require(
        model in MODELS, "model.name", f"unknown model {model!r}", f"use one of {sorted(MODELS)}"
    )
    dataset = _dataset(cfg, num_nodes, cwd)
    targets = _targets(targets, METRICS[TASKS[dataset.name].metric], dataset.name)
    fits = [m for m, d in MODEL_DATASET.items() if d == dataset.name]
    require(
        MODEL_DATASET[model] == dataset.name,
        "model.name",
        f"{model} is built for {MODEL_DATASET[model]}, not dataset {dataset.name}",
        f"use model={' or model='.join(fits)} with dataset={dataset.name}",
    )
    algorithm, algorithm_class = _algorithm(cfg, num_nodes)
    run = RunConfig(
        num_nodes=num_nodes,
        duration=duration,
        seed=seed,
        tdf=tdf,
        lag_tolerance=number(cfg, "lag_tolerance", "", low=0.0),
        step_times=tuple(step_times),
        threads=number(compute, "threads", "compute.", kind=int, low=1),
        pace=pace,
        pacing=pacing,
        gate_slots=gate_slots,
        calibration_margin=number(compute, "calibration_margin", "compute.", low=1.0),
        calibration_rounds=number(compute, "calibration_rounds", "compute.", kind=int, low=1),
        eval_interval=interval,
        targets=targets,
        eval_workers=number({"w": workers}, "w", "eval.workers", kind=int, low=1),
        keep_snapshots=keep,
        bind=bind,
        max_message_bytes=number(tr, "max_message_bytes", "transport.", kind=int, low=1024),
        max_connections=number(tr, "max_connections", "transport.", kind=int, low=1),
        start_timeout=number(launch, "start_timeout", "launch.", low=1.0),
        stop_grace=number(launch, "stop_grace", "launch.", low=0.1),
        progress_interval=number(launch, "progress_interval", "launch.", low=0.1),
        algorithm=algorithm,
        algorithm_class=algorithm_class,
        model=model,
        dataset=dataset,
        network=plan_network(cfg, num_nodes),
    )
    require(math.isfinite(run.duration), "duration", "is not finite", "use e.g. duration=60")
    return run
