"""Validates the composed hydra config into typed, frozen objects before any process starts."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from launcher.report.metric import Metric, metric_of_task
from node.algorithms import AlgorithmConfig, load_algorithm
from node.config import DataSpec, LinkSpec, require
from node.data import TASKS
from node.models import MODEL_DATASET, MODELS

# Keys every data set has, and the keys each adds: another set's key is refused by name.
DATASET_KEYS = frozenset({"name", "partition", "partition_seed"})
DATASET_EXTRA_KEYS = {
    "mnist1d": frozenset({"num_samples", "data_seed", "shards_per_node", "alpha"}),
    "cifar10": frozenset({"root", "download", "shards_per_node", "alpha"}),
    "movielens": frozenset({"root", "download", "train_fraction"}),
}
# Keys every network profile has, and the keys each profile adds: a key of another profile
# is refused by name, so that a stragglers setting never silently rides along with geo.
NETWORK_KEYS = frozenset({"name", "latency_ms", "overrides"})
NETWORK_PROFILES = {
    "uniform": frozenset({"rate_mbps"}),
    "stragglers": frozenset(
        {"rate_mbps", "num_stragglers", "straggler_fraction", "slowdown", "straggler_ids"}
    ),
    "geo": frozenset(
        {
            "region_names",
            "nodes_per_region",
            "num_regions",
            "matrix_mbps",
            "intra_region_mbps",
            "rate_scale",
            "uplink_mbps",
            "downlink_mbps",
        }
    ),
}


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    name: str
    links: tuple[LinkSpec, ...]  # one per node, overrides applied
    stragglers: tuple[int, ...]
    regions: tuple[str, ...] = ()  # per node, geo profile only


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


def _section(cfg: dict, key: str, known: set[str], path: str = "") -> dict:
    full = f"{path}{key}"
    value = cfg.get(key)
    require(isinstance(value, dict), full, "missing or not a mapping", f"add a '{full}:' section")
    unknown = set(value) - known
    require(
        not unknown,
        f"{full}.{sorted(unknown)[0]}" if unknown else full,
        "unknown key",
        f"remove it; known keys of '{full}' are {sorted(known)}",
    )
    return value


def _num(d: dict, key: str, path: str, kind=float, low=None, high=None, fix="") -> float | int:
    full = f"{path}{key}"
    require(key in d and d[key] is not None, full, "missing", fix or f"set {full}")
    value = d[key]
    ok_type = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    require(ok_type, full, f"{value!r} is not a{'n int' if kind is int else ' number'}", fix)
    require(low is None or value >= low, full, f"{value} is below {low}", fix or f"use >= {low}")
    require(
        high is None or value <= high, full, f"{value} is above {high}", fix or f"use <= {high}"
    )
    return kind(value)


def _node_ids(value, key: str, num_nodes: int) -> tuple[int, ...]:
    ok = isinstance(value, list | tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < num_nodes for v in value
    )
    require(ok, key, f"{value!r} is not a list of node ids in [0, {num_nodes})", "fix the ids")
    require(len(set(value)) == len(value), key, "repeats a node id", "list each node once")
    return tuple(value)


def _access_links(
    net: dict, name: str, num_nodes: int, latency: float
) -> tuple[list[dict], tuple[int, ...]]:
    """uniform and stragglers: every node's access link; stragglers get rate / slowdown."""
    rate = _num(net, "rate_mbps", "network.", low=1e-6)
    stragglers: tuple[int, ...] = ()
    slowdown = 1.0
    if name == "stragglers":
        slowdown = _num(net, "slowdown", "network.", low=1.0, fix="e.g. 5 for 1/5 of the bandwidth")
        count, fraction, ids = (
            net.get(k) for k in ("num_stragglers", "straggler_fraction", "straggler_ids")
        )
        given = [
            k
            for k, v in (
                ("num_stragglers", count),
                ("straggler_fraction", fraction),
                ("straggler_ids", ids),
            )
            if v is not None
        ]
        require(
            len(given) == 1,
            "network.num_stragglers",
            f"exactly one of num_stragglers, straggler_fraction, straggler_ids must be set "
            f"(got {given or 'none'})",
            "set one and null the others (e.g. "
            "network.straggler_fraction=null network.num_stragglers=7)",
        )
        if ids is not None:
            stragglers = _node_ids(list(ids), "network.straggler_ids", num_nodes)
        else:
            if count is None:
                fraction = _num(net, "straggler_fraction", "network.", low=0.0, high=1.0)
                # At least one straggler when a fraction is asked for, so small runs keep the shape.
                count = max(1, round(fraction * num_nodes)) if fraction > 0 else 0
            count = _num({"n": count}, "n", "", kind=int, low=0)
            require(
                count <= num_nodes,
                "network.num_stragglers",
                f"{count} stragglers but only {num_nodes} nodes",
                "lower it",
            )
            stragglers = tuple(range(count))  # the artifact gives stragglers uids 0..k-1
    links = []
    for node in range(num_nodes):
        r = rate / slowdown if node in stragglers else rate
        links.append({"up_mbps": r, "down_mbps": r, "latency_ms": latency})
    return links, stragglers


def _geo_links(net: dict, num_nodes: int, latency: float) -> tuple[list[dict], tuple[str, ...]]:
    """Regions of `nodes_per_region` contiguous node ids, in region order; each node gets a
    path rate to every other node: the region pair's, or `intra_region_mbps` within a region.
    Every rate, the access links' too, is multiplied by `rate_scale`."""
    names = net.get("region_names")
    require(
        isinstance(names, list) and len(names) >= 1 and all(isinstance(n, str) for n in names),
        "network.region_names",
        f"{names!r} is not a list of region names",
        "e.g. network.region_names=[ohio,oregon]",
    )
    require(
        len(set(names)) == len(names),
        "network.region_names",
        "repeats a region",
        "list each region once",
    )
    per = _num(net, "nodes_per_region", "network.", kind=int, low=1)
    count = len(names)
    if net.get("num_regions") is not None:
        count = _num(net, "num_regions", "network.", kind=int, low=1, high=len(names))
    if num_nodes != count * per:
        # Suggest a split of num_nodes over the first regions, 2+ nodes per region if possible.
        splits = [(r, num_nodes // r) for r in range(1, len(names) + 1) if num_nodes % r == 0]
        r, p = max(splits, key=lambda s: (s[1] >= 2, s[0]))
        require(
            False,
            "num_nodes",
            f"{num_nodes} nodes do not fill {count} geo regions of {per} nodes",
            f"use num_nodes={count * per} for {count} regions of {per}, or set "
            f"network.nodes_per_region (and network.num_regions, the first regions in order), "
            f"e.g. network.num_regions={r} network.nodes_per_region={p}",
        )
    matrix = net.get("matrix_mbps")
    require(
        isinstance(matrix, dict),
        "network.matrix_mbps",
        "missing or not a mapping",
        "map region -> region -> Mbit/s, each pair of regions once",
    )
    pair: dict[frozenset, float] = {}
    for a, row in matrix.items():
        key = f"network.matrix_mbps.{a}"
        unknown_fix = f"use one of {names}, or add it to network.region_names"
        require(a in names, key, f"unknown region {a!r}", unknown_fix)
        require(isinstance(row, dict), key, "not a mapping", "map other regions to Mbit/s")
        for b in row:
            require(b in names, f"{key}.{b}", f"unknown region {b!r}", unknown_fix)
            require(b != a, f"{key}.{b}", "is a region with itself", "use intra_region_mbps")
            require(
                frozenset((a, b)) not in pair,
                f"{key}.{b}",
                f"the pair {a}-{b} is given twice (rates are symmetric)",
                f"keep one of network.matrix_mbps.{a}.{b} and network.matrix_mbps.{b}.{a}",
            )
            pair[frozenset((a, b))] = _num(row, b, f"{key}.", low=1e-6)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            require(
                frozenset((a, b)) in pair,
                f"network.matrix_mbps.{a}.{b}",
                f"the pair {a}-{b} is missing",
                f"add network.matrix_mbps.{a}.{b} (Mbit/s, symmetric: once per pair)",
            )
    scale = _num(net, "rate_scale", "network.", low=1e-6, fix="e.g. 1.0 for the rates as given")
    intra = _num(net, "intra_region_mbps", "network.", low=1e-6)
    access = {}
    for k in ("uplink_mbps", "downlink_mbps"):
        access[k] = math.inf
        if net.get(k) is not None:
            access[k] = scale * _num(net, k, "network.", low=1e-6, fix="Mbit/s, or null")
    region_of = tuple(names[node // per] for node in range(num_nodes))
    links = []
    for node, here in enumerate(region_of):
        paths = {
            dst: scale * (intra if there == here else pair[frozenset((here, there))])
            for dst, there in enumerate(region_of)
            if dst != node
        }
        links.append(
            {
                "up_mbps": access["uplink_mbps"],
                "down_mbps": access["downlink_mbps"],
                "latency_ms": latency,
                "paths": paths,
            }
        )
    return links, region_of


def _network(cfg: dict, num_nodes: int) -> NetworkConfig:
    raw = cfg.get("network")
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(raw, dict):
        require(
            name in NETWORK_PROFILES,
            "network.name",
            f"unknown profile {name!r}",
            "use network=uniform, network=stragglers or network=geo",
        )
        for key in sorted(set(raw) - NETWORK_KEYS - NETWORK_PROFILES[name]):
            owner = next((p for p, keys in NETWORK_PROFILES.items() if key in keys), None)
            require(
                owner is None,
                f"network.{key}",
                f"is a key of the {owner} profile, not of {name}",
                f"remove it, or use network={owner}",
            )
    net = _section(cfg, "network", NETWORK_KEYS | NETWORK_PROFILES.get(name, frozenset()))
    latency = _num(net, "latency_ms", "network.", low=0)
    stragglers: tuple[int, ...] = ()
    regions: tuple[str, ...] = ()
    if name == "geo":
        links, regions = _geo_links(net, num_nodes, latency)
    else:
        links, stragglers = _access_links(net, name, num_nodes, latency)
    overrides = net.get("overrides") or {}
    require(
        isinstance(overrides, dict),
        "network.overrides",
        "not a mapping",
        "write e.g. network.overrides={3: {up_mbps: 1}}",
    )
    for node, over in overrides.items():
        key = f"network.overrides.{node}"
        node_id = int(node) if str(node).isdigit() else -1
        require(0 <= node_id < num_nodes, key, "is not a node id", f"use 0..{num_nodes - 1}")
        require(
            isinstance(over, dict) and set(over) <= {"up_mbps", "down_mbps", "latency_ms"},
            key,
            "must map up_mbps/down_mbps/latency_ms to numbers",
            "fix the keys",
        )
        for k in over:
            links[node_id][k] = _num(over, k, key + ".", low=1e-6 if k != "latency_ms" else 0)
    return NetworkConfig(
        name=name,
        links=tuple(LinkSpec(**link) for link in links),
        stragglers=stragglers,
        regions=regions,
    )


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


def _alpha(ds: dict) -> float:
    """dataset.alpha: required by partition=dirichlet, checked whenever it is given."""
    if ds.get("alpha") is None and ds.get("partition") != "dirichlet":
        return DataSpec.alpha
    fix = "use e.g. dataset.alpha=0.1 (Dirichlet concentration; smaller is more skewed)"
    alpha = _num(ds, "alpha", "dataset.", fix=fix)
    require(alpha > 0, "dataset.alpha", f"{alpha} is not positive", fix)
    return alpha


def _dataset(cfg: dict, num_nodes: int, cwd: str | None) -> DataSpec:
    """The dataset section: known set, its own keys only, a partitioner it supports."""
    raw = cfg.get("dataset")
    name = raw.get("name") if isinstance(raw, dict) else None
    require(
        name in TASKS, "dataset.name", f"unknown data set {name!r}", f"use one of {list(TASKS)}"
    )
    ds = _section(cfg, "dataset", set(DATASET_KEYS | DATASET_EXTRA_KEYS[name]))
    partitions = TASKS[name].partitions
    require(
        ds.get("partition") in partitions,
        "dataset.partition",
        f"{ds.get('partition')!r} is not a partitioner of {name}",
        f"use one of {list(partitions)}",
    )
    root = Path(ds.get("root") or cfg.get("data_root") or "data")
    root = root if root.is_absolute() else Path(cwd or os.getcwd()) / root
    values: dict = {}
    if name == "mnist1d":
        values["num_samples"] = _num(ds, "num_samples", "dataset.", kind=int, low=100)
        values["data_seed"] = _num(ds, "data_seed", "dataset.", kind=int, low=0)
    if "shards_per_node" in DATASET_EXTRA_KEYS[name]:
        values["shards_per_node"] = _num(ds, "shards_per_node", "dataset.", kind=int, low=1)
        values["alpha"] = _alpha(ds)
    if "download" in DATASET_EXTRA_KEYS[name]:
        download = ds.get("download", True)
        require(
            isinstance(download, bool),
            "dataset.download",
            f"{download!r} is not a boolean",
            "true (fetch missing files when online) or false",
        )
        values["download"] = download
    if name == "movielens":
        values["train_fraction"] = _num(
            ds, "train_fraction", "dataset.", low=0.05, high=0.95, fix="e.g. 0.7 (70/30 per user)"
        )
        require(
            num_nodes <= 610,
            "num_nodes",
            f"{num_nodes} nodes but ml-latest-small has 610 users to split by user",
            "use num_nodes<=610",
        )
    dataset = DataSpec(
        name=name,
        root=str(root),
        partition=ds["partition"],
        partition_seed=_num(ds, "partition_seed", "dataset.", kind=int, low=0),
        **values,
    )
    if name == "mnist1d" and dataset.partition == "kshard":
        shards = num_nodes * dataset.shards_per_node
        train = int(dataset.num_samples * 0.8)
        require(
            train >= shards,
            "dataset.num_samples",
            f"{train} training samples cannot fill {shards} shards",
            "raise dataset.num_samples or lower dataset.shards_per_node",
        )
    return dataset


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
    num_nodes = _num(cfg, "num_nodes", "", kind=int, low=2, fix="num_nodes>=2 (N=4 in make)")
    duration = _num(cfg, "duration", "", low=1e-3, fix="emulated seconds, e.g. duration=60")
    seed = _num(cfg, "seed", "", kind=int, low=0)
    tdf = cfg.get("tdf")
    if tdf != "auto":
        tdf = _num(cfg, "tdf", "", low=1.0, fix="tdf=auto, or a factor >= 1")
    else:
        tdf = None
    compute = _section(
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
    gate_slots = _num({"g": gate_slots}, "g", "compute.gate_slots", kind=int, low=0)
    step_time = _num(compute, "step_time", "compute.", low=1e-6)
    step_times = [step_time] * num_nodes
    slow = _node_ids(list(compute.get("stragglers") or []), "compute.stragglers", num_nodes)
    if slow:
        slowdown = _num(compute, "slowdown", "compute.", low=1.0, fix="e.g. 5 for 5x slower steps")
        for node in slow:
            step_times[node] = step_time * slowdown
    for node, value in (compute.get("overrides") or {}).items():
        key = f"compute.overrides.{node}"
        node_id = int(node) if str(node).isdigit() else -1
        require(0 <= node_id < num_nodes, key, "is not a node id", f"use 0..{num_nodes - 1}")
        step_times[node_id] = _num({"v": value}, "v", key, low=1e-6)
    ev = _section(cfg, "eval", {"interval", "targets", "workers", "keep_snapshots"})
    keep = ev.get("keep_snapshots", False)
    require(
        isinstance(keep, bool), "eval.keep_snapshots", f"{keep!r} is not a boolean", "true/false"
    )
    interval = _num(ev, "interval", "eval.", low=1e-3)
    require(
        interval <= duration,
        "eval.interval",
        f"{interval} exceeds duration {duration}",
        "lower eval.interval or raise duration",
    )
    targets = ev.get("targets")
    workers = ev.get("workers")
    workers = (os.cpu_count() or 1) if workers in (None, "auto") else workers
    tr = _section(cfg, "transport", {"bind", "max_message_bytes", "max_connections"})
    bind = tr.get("bind")
    require(
        bind == "ipc://" or (isinstance(bind, str) and bind.startswith("tcp://")),
        "transport.bind",
        f"{bind!r} is not an address nodes can bind on",
        "use ipc:// (one host: Unix sockets in a folder of the run's own) or tcp://127.0.0.1",
    )
    launch = _section(cfg, "launch", {"start_timeout", "stop_grace", "progress_interval"})
    model = _section(cfg, "model", {"name"}).get("name")
    require(
        model in MODELS, "model.name", f"unknown model {model!r}", f"use one of {sorted(MODELS)}"
    )
    dataset = _dataset(cfg, num_nodes, cwd)
    targets = _targets(targets, metric_of_task(dataset.name), dataset.name)
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
        lag_tolerance=_num(cfg, "lag_tolerance", "", low=0.0),
        step_times=tuple(step_times),
        threads=_num(compute, "threads", "compute.", kind=int, low=1),
        pace=pace,
        pacing=pacing,
        gate_slots=gate_slots,
        calibration_margin=_num(compute, "calibration_margin", "compute.", low=1.0),
        calibration_rounds=_num(compute, "calibration_rounds", "compute.", kind=int, low=1),
        eval_interval=interval,
        targets=targets,
        eval_workers=_num({"w": workers}, "w", "eval.workers", kind=int, low=1),
        keep_snapshots=keep,
        bind=bind,
        max_message_bytes=_num(tr, "max_message_bytes", "transport.", kind=int, low=1024),
        max_connections=_num(tr, "max_connections", "transport.", kind=int, low=1),
        start_timeout=_num(launch, "start_timeout", "launch.", low=1.0),
        stop_grace=_num(launch, "stop_grace", "launch.", low=0.1),
        progress_interval=_num(launch, "progress_interval", "launch.", low=0.1),
        algorithm=algorithm,
        algorithm_class=algorithm_class,
        model=model,
        dataset=dataset,
        network=_network(cfg, num_nodes),
    )
    require(math.isfinite(run.duration), "duration", "is not finite", "use e.g. duration=60")
    return run
