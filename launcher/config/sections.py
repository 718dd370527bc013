"""One validation system for every config section: a dataclass per section (here the run's
own; the network profiles in network.py, each data set's beside it, each algorithm's beside
it), checked by OmegaConf's structured configs for keys and types (`typed`) and by its own
`__post_init__` for ranges, each error naming the key and the fix (a field's `fix` metadata is
the fix shown when its value has the wrong type)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from node.checks import at_least, hinted, node_ids, require
from node.models import MODELS


def typed(config_class: type, values: dict, section: str):
    """`values` as a `config_class` instance: its defaults fill what is missing, every value is
    checked against the field's type (bool, list, optional... as OmegaConf's structured
    configs do), and the class's own `__post_init__` checks run."""
    prefix = f"{section}." if section else ""
    known = sorted(f.name for f in fields(config_class))
    try:
        merged = OmegaConf.merge(OmegaConf.structured(config_class), values)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        where = f"'{section}'" if section else "the top level"
        require(
            False,
            prefix + err.full_key,
            "unknown key",
            f"remove it; known keys of {where} are {known}",
        )
    except MissingMandatoryValue as err:
        key = prefix + err.full_key
        require(False, key, "missing", f"set {key} in the YAML or as {key}=VALUE")
    except ValidationError as err:
        name = re.split(r"[.\[]", err.full_key)[0]  # ids[0] is an element of field ids
        spec = {f.name: f for f in fields(config_class)}.get(name)
        hint = spec.metadata.get("fix") if spec is not None else None
        problem = str(err).splitlines()[0]
        type_fix = f"give {prefix}{name} a value of type {spec.type if spec else '?'}"
        require(False, prefix + err.full_key, problem, hint or type_fix)


CLOCKS = ("virtual", "wall")


@dataclass
class TopLevel:
    """The run's top-level scalars (the sections are checked on their own)."""

    num_nodes: int = hinted("num_nodes>=2 (N=4 in make)")
    duration: float = hinted("emulated seconds, e.g. duration=60")
    seed: int = hinted("a seed >= 0, e.g. seed=1")
    clock: str = hinted("virtual or wall, e.g. clock=wall", "virtual")
    tdf: Any = hinted("tdf=auto, or a factor >= 1", "auto")
    lag_tolerance: float = hinted("emulated seconds, e.g. lag_tolerance=0.06")
    data_root: str = "data"

    def __post_init__(self):
        at_least(self.num_nodes, 2, "num_nodes", "num_nodes>=2 (N=4 in make)")
        ok = math.isfinite(self.duration) and self.duration >= 1e-3
        require(ok, "duration", f"{self.duration} is not a duration", "e.g. duration=60")
        at_least(self.seed, 0, "seed")
        require(
            self.clock in CLOCKS,
            "clock",
            f"{self.clock!r} is not a clock",
            "virtual (time kept by the launcher: no factor, no lag) or wall (dilated wall "
            "time: tdf=auto calibrates a factor)",
        )
        require(
            self.clock == "wall" or self.tdf == "auto",
            "tdf",
            f"tdf={self.tdf} sets the factor of dilated wall time; with clock=virtual there is "
            "none (emulated time moves when every node is done)",
            f"drop tdf, or use clock=wall tdf={self.tdf}",
        )
        if self.tdf != "auto":
            number = isinstance(self.tdf, int | float) and not isinstance(self.tdf, bool)
            require(
                number and self.tdf >= 1.0,
                "tdf",
                f"{self.tdf!r} is not a factor >= 1",
                "tdf=auto, or a factor >= 1",
            )
        at_least(self.lag_tolerance, 0.0, "lag_tolerance")


@dataclass
class Compute:
    step_time: float = hinted("emulated seconds per local step, e.g. compute.step_time=0.00485")
    overrides: dict[Any, float] = field(default_factory=dict)  # node -> its step time
    stragglers: list[int] = field(default_factory=list)
    slowdown: float = hinted("e.g. 5 for 5x slower steps", 5.0)
    threads: int = 1
    pace: bool = True
    pacing: str = "burst"
    gate_slots: Any = "auto"
    calibration_rounds: int = 4
    calibration_margin: float = 1.0

    def __post_init__(self):
        at_least(self.step_time, 1e-6, "compute.step_time")
        at_least(self.slowdown, 1.0, "compute.slowdown", "e.g. 5 for 5x slower steps")
        at_least(self.threads, 1, "compute.threads")
        require(
            self.pacing in ("burst", "step"),
            "compute.pacing",
            f"{self.pacing!r} is not a pacing",
            "burst (a round at once where the algorithm allows it) or step (every step paced)",
        )
        if self.gate_slots == "auto":
            self.gate_slots = len(os.sched_getaffinity(0))
        slots = self.gate_slots
        ok = isinstance(slots, int) and not isinstance(slots, bool) and slots >= 0
        require(ok, "compute.gate_slots", f"{slots!r} is not a count", "auto, 0 (no gate) or >= 1")
        at_least(self.calibration_rounds, 1, "compute.calibration_rounds")
        at_least(self.calibration_margin, 1.0, "compute.calibration_margin")
        for node, step in self.overrides.items():
            at_least(step, 1e-6, f"compute.overrides.{node}")

    def step_times(self, num_nodes: int, base=None) -> tuple[float, ...]:
        """Each node's emulated step time (`base`: per node, from a device trace; else
        step_time): stragglers slowed down, then the overrides."""
        node_ids(self.stragglers, "compute.stragglers", num_nodes)
        times = list(base) if base else [self.step_time] * num_nodes
        for node in self.stragglers:
            times[node] = self.step_time * self.slowdown
        for node, step in self.overrides.items():
            key = f"compute.overrides.{node}"
            node_id = int(node) if str(node).isdigit() else -1
            require(0 <= node_id < num_nodes, key, "is not a node id", f"use 0..{num_nodes - 1}")
            times[node_id] = step
        return tuple(times)


@dataclass
class Eval:
    interval: float = hinted("emulated seconds between snapshots, e.g. eval.interval=2")
    targets: Any = "auto"  # checked against the data set's metric by the schema
    workers: Any = "auto"
    keep_snapshots: bool = False

    def __post_init__(self):
        at_least(self.interval, 1e-3, "eval.interval")
        if self.workers in (None, "auto"):
            self.workers = os.cpu_count() or 1
        w = self.workers
        ok = isinstance(w, int) and not isinstance(w, bool) and w >= 1
        require(ok, "eval.workers", f"{w!r} is not a count of processes", "auto, or >= 1")


CURVE_MODES = ("auto", "on", "off")


@dataclass
class Transport:
    bind: str = MISSING
    max_message_bytes: int = MISSING
    max_connections: int = MISSING
    curve: str = hinted("auto, on or off, e.g. transport.curve=on")

    def __post_init__(self):
        require(
            self.curve in CURVE_MODES,
            "transport.curve",
            f"{self.curve!r} is not a CURVE mode",
            "use auto (on when nodes bind off loopback), on or off",
        )
        require(
            self.bind == "ipc://" or self.bind.startswith("tcp://"),
            "transport.bind",
            f"{self.bind!r} is not an address nodes can bind on",
            "use ipc:// (one host: Unix sockets in a folder of the run's own) or tcp://127.0.0.1",
        )
        at_least(self.max_message_bytes, 1024, "transport.max_message_bytes")
        at_least(self.max_connections, 1, "transport.max_connections")


BACKENDS = ("local", "ray")
PLACEMENTS = {"spread": "SPREAD", "pack": "PACK"}  # ours -> Ray's placement group strategy


@dataclass
class Launch:
    start_timeout: float = MISSING
    stop_grace: float = MISSING
    progress_interval: float = MISSING
    backend: str = hinted("local or ray, e.g. launch.backend=ray", "local")
    host: str = hinted("an address of this host, e.g. launch.host=10.0.0.5", "127.0.0.1")
    stall_timeout: float = hinted("wall seconds, e.g. launch.stall_timeout=300", 120.0)

    def __post_init__(self):
        at_least(self.start_timeout, 1.0, "launch.start_timeout")
        at_least(self.stall_timeout, 1.0, "launch.stall_timeout")
        at_least(self.stop_grace, 0.1, "launch.stop_grace")
        at_least(self.progress_interval, 0.1, "launch.progress_interval")
        require(
            self.backend in BACKENDS,
            "launch.backend",
            f"unknown backend {self.backend!r}",
            "use local (processes on this host) or ray (actors on a Ray cluster)",
        )
        require(
            bool(self.host) and "/" not in self.host and " " not in self.host,
            "launch.host",
            f"{self.host!r} is not a host address",
            "an address of this host the nodes can reach (127.0.0.1 on one host), or node-ip "
            "for the address Ray gives this host",
        )


@dataclass
class Ray:
    address: str = hinted("local, auto or HOST:PORT, e.g. ray.address=auto", "local")
    placement: str = hinted("spread or pack, e.g. ray.placement=pack", "spread")
    cpus_per_node: float = hinted("CPUs each node's actor reserves, e.g. ray.cpus_per_node=1", 1.0)

    def __post_init__(self):
        require(
            self.placement in PLACEMENTS,
            "ray.placement",
            f"unknown placement {self.placement!r}",
            "use spread (over as many machines as there are) or pack (on as few as fit)",
        )
        require(
            self.cpus_per_node > 0,
            "ray.cpus_per_node",
            f"{self.cpus_per_node} is not a CPU share",
            "use a number above 0, e.g. 1 or 0.5",
        )
        require(
            bool(self.address) and " " not in self.address,
            "ray.address",
            f"{self.address!r} is not a Ray address",
            "use local (a Ray instance for this run), auto (the cluster this host joined) or "
            "HOST:PORT of the head",
        )


@dataclass
class Model:
    name: str = hinted("e.g. model=cnn1d")

    def __post_init__(self):
        require(
            self.name in MODELS,
            "model.name",
            f"unknown model {self.name!r}",
            f"use one of {sorted(MODELS)}",
        )


@dataclass
class Timeline:
    """timeline.json (Chrome trace, opens in Perfetto) and timeline.png in the run folder."""

    enabled: bool = hinted("true or false, e.g. timeline.enabled=true", False)
    max_events: int = 20000  # per node; beyond, counted and not kept
    lanes: int = 16  # nodes drawn in timeline.png (the first ones)
    window: float | None = None  # emulated seconds drawn in timeline.png; None: all of the run

    def __post_init__(self):
        at_least(self.max_events, 1, "timeline.max_events")
        at_least(self.lanes, 1, "timeline.lanes")
        if self.window is not None:
            at_least(self.window, 1e-3, "timeline.window")


# The sections of the top level with a class here (the algorithm's, the network profile's and
# the data set's classes are chosen by the section's name).
SECTIONS = {
    "compute": Compute,
    "eval": Eval,
    "transport": Transport,
    "launch": Launch,
    "model": Model,
    "ray": Ray,
}
