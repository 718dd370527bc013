"""Validates the composed hydra config into typed, frozen objects before any process starts."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path

from launcher.config.network import NetworkConfig, plan_network
from launcher.config.scenario import plan_scenario
from launcher.config.sections import PLACEMENTS, SECTIONS, Timeline, TopLevel, typed
from launcher.heterogeneity import TracePlan, TracesSection, heterogeneity, with_rates
from launcher.report.metric import METRICS, Metric
from node.algorithms import Algorithm, AlgorithmConfig, load_algorithm
from node.checks import require
from node.data import MODEL_DATASET, TASKS
from node.sharing import CODECS, FULL, SharingConfig
from node.spec import DataSpec
from transport import Action
from transport.security import binds_off_loopback


@dataclass(frozen=True)
class RaySettings:
    address: str  # local: a Ray instance for the run; auto: the cluster this host is in; HOST:PORT
    strategy: str  # the placement group's: SPREAD or PACK
    cpus_per_node: float


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    num_nodes: int
    duration: float
    seed: int
    clock: str  # virtual: emulated time kept by the launcher; wall: dilated wall time
    tdf: float | None  # clock=wall: None = calibrate on this host
    lag_tolerance: float
    step_times: tuple[float, ...]  # per node, emulated seconds per local step
    threads: int
    pace: bool
    pacing: str  # "burst": a round computed at once when the algorithm allows it; "step"
    gate_slots: int  # nodes computing at once (the host's cores by default); 0: no gate
    gate_slots_auto: bool  # given as auto: on a cluster, each machine's gate has its own cores
    calibration_margin: float
    calibration_rounds: int
    eval_interval: float
    targets: tuple[float, ...]
    eval_workers: int
    keep_snapshots: bool
    bind: str
    max_message_bytes: int
    max_connections: int
    curve: bool  # every data socket speaks CURVE with a key pair made for the run
    backend: str  # local: OS processes on this host; ray: one Ray actor per node
    host: str  # where the launcher's control socket binds (node-ip: the one Ray gives this host)
    ray: RaySettings | None  # with backend ray
    start_timeout: float
    stall_timeout: float  # virtual time: wall seconds with nothing moving before it is named
    stop_grace: float
    progress_interval: float
    algorithm: AlgorithmConfig
    algorithm_class: str  # the dotted path of its Algorithm subclass (the YAML's _target_)
    model: str
    dataset: DataSpec
    network: NetworkConfig
    scenario: tuple[Action, ...] = ()  # what changes during the run, in emulated time
    sharing: SharingConfig = FULL  # the codec of the algorithms that exchange models
    timeline: Timeline | None = None  # what timeline.json and timeline.png hold; None: off
    traces: TracePlan | None = None  # which trace client each node is; None: no trace


def _algorithm(cfg: dict, num_nodes: int) -> tuple[AlgorithmConfig, str, type[Algorithm]]:
    """The algorithm's typed config, the dotted path of its class (`_target_`) and the class."""
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
    return config, target, algorithm_class


def _sharing(cfg: dict, cls: type[Algorithm]) -> SharingConfig:
    """The codec's typed config; an algorithm that does not send through a codec takes full."""
    raw = cfg.get("sharing", {"name": "full"})
    name = raw.get("name") if isinstance(raw, dict) else None
    require(name in CODECS, "sharing.name", f"unknown codec {name!r}", f"use one of {list(CODECS)}")
    config = typed(CODECS[name].config_class, raw, "sharing")
    if name != "full" and not cls.uses_codec:
        require(
            False,
            "sharing",
            f"{cls.__name__} does not send its model through a codec, so sharing={name} would "
            "change nothing",
            "use sharing=full with it, or an algorithm that takes a codec (choco, dpsgd, el, "
            "swift, adpsgd; a plug-in sets uses_codec = True)",
        )
    return config


def _dataset(cfg: dict, num_nodes: int, cwd: str | None) -> DataSpec:
    """The dataset section as its data set's config class (its own keys only, a partitioner it
    supports, its own checks), with the files' folder resolved."""
    raw = cfg.get("dataset")
    name = raw.get("name") if isinstance(raw, dict) else None
    require(
        name in TASKS, "dataset.name", f"unknown data set {name!r}", f"use one of {list(TASKS)}"
    )
    config = typed(TASKS[name].config_class, raw, "dataset")
    config.check(num_nodes)
    values = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
    root = Path(values.pop("root", None) or cfg.get("data_root") or "data")
    root = root if root.is_absolute() else Path(cwd or os.getcwd()) / root
    return DataSpec(root=str(root), **values)


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


def _ray(launch, section, bind: str) -> RaySettings | None:
    """With launch.backend=ray: Ray importable, and an address other hosts can reach."""
    if launch.backend != "ray":
        return None
    try:
        import ray as _  # noqa: F401
    except ImportError:
        require(
            False,
            "launch.backend",
            "ray is not installed in this environment",
            "pip install -e '.[ray]' (make setup installs it with the dev extras)",
        )
    require(
        bind.startswith("tcp://"),
        "transport.bind",
        f"{bind!r} cannot be reached from another host",
        "use tcp://node-ip (each node on its host's address) or tcp://127.0.0.1 (one host)",
    )
    return RaySettings(section.address, PLACEMENTS[section.placement], section.cpus_per_node)


def _mapping(cfg: dict, key: str) -> dict:
    value = cfg.get(key)
    require(isinstance(value, dict), key, "missing or not a mapping", f"add a '{key}:' section")
    return value


def validate(cfg: dict, cwd: str | None = None) -> RunConfig:
    """Turn the composed config (a plain dict) into a RunConfig, or raise ConfigError."""
    scalars = {f.name for f in fields(TopLevel)}
    sections = {"algorithm", "network", "dataset", "scenario", "sharing", "timeline", "traces"}
    top = scalars | set(SECTIONS) | sections
    unknown = set(cfg) - top - {"hydra"}
    require(
        not unknown,
        sorted(unknown)[0] if unknown else "",
        "unknown key",
        f"remove it; known top-level keys are {sorted(top)}",
    )
    run = typed(TopLevel, {k: v for k, v in cfg.items() if k in scalars}, "")
    compute, ev, tr, launch, model_section, ray = (
        typed(cls, _mapping(cfg, k), k) for k, cls in SECTIONS.items()
    )
    ray_settings = _ray(launch, ray, tr.bind)
    require(
        run.clock == "wall" or compute.pace,
        "compute.pace",
        "false runs steps flat out on the wall clock; in virtual time every step already "
        "costs its emulated time and no more",
        "drop compute.pace=false, or use clock=wall",
    )
    model = model_section.name
    num_nodes = run.num_nodes
    require(
        ev.interval <= run.duration,
        "eval.interval",
        f"{ev.interval} exceeds duration {run.duration}",
        "lower eval.interval or raise duration",
    )
    dataset = _dataset(cfg, num_nodes, cwd)
    targets = _targets(ev.targets, METRICS[TASKS[dataset.name].metric], dataset.name)
    fits = TASKS[dataset.name].models
    require(
        MODEL_DATASET[model] == dataset.name,
        "model.name",
        f"{model} is built for {MODEL_DATASET[model]}, not dataset {dataset.name}",
        f"use model={' or model='.join(fits)} with dataset={dataset.name}",
    )
    algorithm, algorithm_class, cls = _algorithm(cfg, num_nodes)
    sharing = _sharing(cfg, cls)
    timeline = typed(Timeline, cfg.get("timeline") or {}, "timeline")
    traces = typed(TracesSection, cfg.get("traces") or {}, "traces")
    hetero = heterogeneity(traces, num_nodes, run.duration, compute.step_time, cwd)
    scenario = plan_scenario(cfg, num_nodes, run.duration, cwd, list(hetero.actions))
    network = plan_network(cfg, num_nodes)
    if hetero.rates:
        network = dataclasses.replace(network, links=with_rates(network.links, hetero.rates))
    network = dataclasses.replace(network, links=scenario.with_link_changes(network.links))
    return RunConfig(
        num_nodes=num_nodes,
        duration=run.duration,
        seed=run.seed,
        clock=run.clock,
        tdf=None if run.tdf == "auto" else float(run.tdf),
        lag_tolerance=run.lag_tolerance,
        step_times=compute.step_times(num_nodes, hetero.step_times),
        threads=compute.threads,
        pace=compute.pace,
        pacing=compute.pacing,
        gate_slots=compute.gate_slots,
        gate_slots_auto=_mapping(cfg, "compute").get("gate_slots", "auto") == "auto",
        calibration_margin=compute.calibration_margin,
        calibration_rounds=compute.calibration_rounds,
        eval_interval=ev.interval,
        targets=targets,
        eval_workers=ev.workers,
        keep_snapshots=ev.keep_snapshots,
        bind=tr.bind,
        max_message_bytes=tr.max_message_bytes,
        max_connections=tr.max_connections,
        curve=tr.curve == "on" or (tr.curve == "auto" and binds_off_loopback(tr.bind)),
        backend=launch.backend,
        host=launch.host,
        ray=ray_settings,
        start_timeout=launch.start_timeout,
        stall_timeout=launch.stall_timeout,
        stop_grace=launch.stop_grace,
        progress_interval=launch.progress_interval,
        algorithm=algorithm,
        algorithm_class=algorithm_class,
        model=model,
        dataset=dataset,
        network=network,
        scenario=tuple(scenario.actions),
        sharing=sharing,
        timeline=timeline if timeline.enabled else None,
        traces=hetero.plan,
    )
