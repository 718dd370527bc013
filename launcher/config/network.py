"""Plans the network: a profile (uniform, stragglers, geo) checked as a structured config, then
expanded with the per-node overrides into one link per node."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from launcher.config.sections import typed
from launcher.heterogeneity.wan import read_wan_matrix
from node.checks import at_least, hinted, node_ids, require
from transport import LinkSpec


@dataclass
class Profile:
    """What every profile has: its name, the links' latency, per-node overrides."""

    name: str = MISSING
    latency_ms: float = hinted("milliseconds, e.g. network.latency_ms=1")
    overrides: dict[Any, Any] = field(default_factory=dict)  # node -> {up_mbps: ...}

    def __post_init__(self):
        at_least(self.latency_ms, 0, "network.latency_ms")


@dataclass
class Uniform(Profile):
    """Every node's access link at the same rate."""

    rate_mbps: float = hinted("Mbit/s, e.g. network.rate_mbps=5.5")

    def __post_init__(self):
        super().__post_init__()
        at_least(self.rate_mbps, 1e-6, "network.rate_mbps")


@dataclass
class Stragglers(Uniform):
    """Uniform, but some nodes (ids 0..k-1, or the ids given) at rate / slowdown."""

    num_stragglers: int | None = None
    straggler_fraction: float | None = None
    straggler_ids: list[int] | None = None
    slowdown: float = hinted("e.g. 5 for 1/5 of the bandwidth")

    def __post_init__(self):
        super().__post_init__()
        at_least(self.slowdown, 1.0, "network.slowdown", "e.g. 5 for 1/5 of the bandwidth")
        given = [
            k
            for k in ("num_stragglers", "straggler_fraction", "straggler_ids")
            if getattr(self, k) is not None
        ]
        require(
            len(given) == 1,
            "network.num_stragglers",
            f"exactly one of num_stragglers, straggler_fraction, straggler_ids must be set "
            f"(got {given or 'none'})",
            "set one and null the others (e.g. "
            "network.straggler_fraction=null network.num_stragglers=7)",
        )
        if self.straggler_fraction is not None:
            fraction = self.straggler_fraction
            ok = 0.0 <= fraction <= 1.0
            require(ok, "network.straggler_fraction", f"{fraction} is not in [0, 1]", "e.g. 0.12")
        if self.num_stragglers is not None:
            at_least(self.num_stragglers, 0, "network.num_stragglers")

    def ids(self, num_nodes: int) -> tuple[int, ...]:
        if self.straggler_ids is not None:
            return node_ids(self.straggler_ids, "network.straggler_ids", num_nodes)
        count = self.num_stragglers
        if count is None:
            # At least one straggler when a fraction is asked for, so small runs keep the shape.
            fraction = self.straggler_fraction
            count = max(1, round(fraction * num_nodes)) if fraction > 0 else 0
        require(
            count <= num_nodes,
            "network.num_stragglers",
            f"{count} stragglers but only {num_nodes} nodes",
            "lower it",
        )
        return tuple(range(count))  # the artifact gives stragglers uids 0..k-1


@dataclass
class Geo(Profile):
    """Regions of `nodes_per_region` contiguous node ids, in region order; each node gets a
    path rate to every other node: the region pair's, or `intra_region_mbps` within a region.
    Every rate, the access links' too, is multiplied by `rate_scale`."""

    region_names: list[str] = hinted("e.g. network.region_names=[ohio,oregon]")
    nodes_per_region: int = MISSING
    num_regions: int | None = None  # the first regions in order; None: all
    # Any: OmegaConf refuses an int (26) in a nested dict of floats; pair_rates checks them.
    matrix_mbps: dict[str, dict[str, Any]] = hinted(
        "map region -> region -> Mbit/s, each pair of regions once"
    )
    intra_region_mbps: float = MISSING
    rate_scale: float = hinted("e.g. 1.0 for the rates as given")
    uplink_mbps: float | None = hinted("Mbit/s, or null", None)
    downlink_mbps: float | None = hinted("Mbit/s, or null", None)
    # A WAN matrix CSV (src,dst,mbps,ms) instead of region_names and matrix_mbps (read by
    # `_profile` before the checks below)
    matrix_file: str | None = None

    def __post_init__(self):
        super().__post_init__()
        names = self.region_names
        require(len(names) >= 1, "network.region_names", "lists no region", "e.g. [ohio,oregon]")
        unique = len(set(names)) == len(names)
        require(unique, "network.region_names", "repeats a region", "list each region once")
        at_least(self.nodes_per_region, 1, "network.nodes_per_region")
        if self.num_regions is not None:
            at_least(self.num_regions, 1, "network.num_regions")
            require(
                self.num_regions <= len(names),
                "network.num_regions",
                f"{self.num_regions} is above {len(names)}",
                f"use <= {len(names)}",
            )
        at_least(self.rate_scale, 1e-6, "network.rate_scale", "e.g. 1.0 for the rates as given")
        at_least(self.intra_region_mbps, 1e-6, "network.intra_region_mbps")
        for k in ("uplink_mbps", "downlink_mbps"):
            if getattr(self, k) is not None:
                at_least(getattr(self, k), 1e-6, f"network.{k}", "Mbit/s, or null")

    def pair_rates(self) -> dict[frozenset, float]:
        """Each pair of regions once, as given (symmetric), every pair present."""
        names, pair = self.region_names, {}
        for a, row in self.matrix_mbps.items():
            key = f"network.matrix_mbps.{a}"
            unknown_fix = f"use one of {names}, or add it to network.region_names"
            require(a in names, key, f"unknown region {a!r}", unknown_fix)
            for b, rate in row.items():
                require(b in names, f"{key}.{b}", f"unknown region {b!r}", unknown_fix)
                require(b != a, f"{key}.{b}", "is a region with itself", "use intra_region_mbps")
                require(
                    frozenset((a, b)) not in pair,
                    f"{key}.{b}",
                    f"the pair {a}-{b} is given twice (rates are symmetric)",
                    f"keep one of network.matrix_mbps.{a}.{b} and network.matrix_mbps.{b}.{a}",
                )
                number = isinstance(rate, int | float) and not isinstance(rate, bool)
                require(number, f"{key}.{b}", f"{rate!r} is not a number", "Mbit/s, e.g. 100")
                at_least(rate, 1e-6, f"{key}.{b}")
                pair[frozenset((a, b))] = float(rate)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                require(
                    frozenset((a, b)) in pair,
                    f"network.matrix_mbps.{a}.{b}",
                    f"the pair {a}-{b} is missing",
                    f"add network.matrix_mbps.{a}.{b} (Mbit/s, symmetric: once per pair)",
                )
        return pair


PROFILES: dict[str, type[Profile]] = {"uniform": Uniform, "stragglers": Stragglers, "geo": Geo}


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    name: str
    links: tuple[LinkSpec, ...]  # one per node, overrides applied
    stragglers: tuple[int, ...]
    regions: tuple[str, ...] = ()  # per node, geo profile only


def _access_links(net: Uniform, num_nodes: int) -> tuple[list[dict], tuple[int, ...]]:
    """uniform and stragglers: every node's access link; stragglers get rate / slowdown."""
    stragglers = net.ids(num_nodes) if isinstance(net, Stragglers) else ()
    slowdown = net.slowdown if isinstance(net, Stragglers) else 1.0
    links = []
    for node in range(num_nodes):
        r = net.rate_mbps / slowdown if node in stragglers else net.rate_mbps
        links.append({"up_mbps": r, "down_mbps": r, "latency_ms": net.latency_ms})
    return links, stragglers


def _geo_links(net: Geo, num_nodes: int) -> tuple[list[dict], tuple[str, ...]]:
    names, per = net.region_names, net.nodes_per_region
    count = len(names) if net.num_regions is None else net.num_regions
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
    pair, scale = net.pair_rates(), net.rate_scale
    access = {
        k: math.inf if getattr(net, k) is None else scale * getattr(net, k)
        for k in ("uplink_mbps", "downlink_mbps")
    }
    region_of = tuple(names[node // per] for node in range(num_nodes))
    links = []
    for node, here in enumerate(region_of):
        paths = {
            dst: scale
            * (net.intra_region_mbps if there == here else pair[frozenset((here, there))])
            for dst, there in enumerate(region_of)
            if dst != node
        }
        links.append(
            {
                "up_mbps": access["uplink_mbps"],
                "down_mbps": access["downlink_mbps"],
                "latency_ms": net.latency_ms,
                "paths": paths,
            }
        )
    return links, region_of


def _profile(cfg: dict) -> Profile:
    """The `network` section as its profile's dataclass; a key of another profile is refused
    by name, so that a stragglers setting never silently rides along with geo."""
    raw = cfg.get("network")
    require(
        isinstance(raw, dict), "network", "missing or not a mapping", "add a 'network:' section"
    )
    name = raw.get("name")
    require(
        name in PROFILES,
        "network.name",
        f"unknown profile {name!r}",
        "use network=uniform, network=stragglers or network=geo",
    )
    own = {f.name for f in fields(PROFILES[name])}
    for key in sorted(set(raw) - own):
        owner = next(
            (p for p, cls in PROFILES.items() if key in {f.name for f in fields(cls)}), None
        )
        require(
            owner is None,
            f"network.{key}",
            f"is a key of the {owner} profile, not of {name}",
            f"remove it, or use network={owner}",
        )
    if name == "geo" and raw.get("matrix_file"):
        raw = _with_matrix(raw)
    return typed(PROFILES[name], raw, "network")


def _with_matrix(raw: dict) -> dict:
    """The geo section with its regions, rates and latency from `matrix_file`; a rate within
    a region in the file replaces intra_region_mbps."""
    wan = read_wan_matrix(Path(raw["matrix_file"]))
    raw = {**raw, "region_names": wan.region_names, "matrix_mbps": wan.matrix_mbps}
    raw["latency_ms"] = wan.latency_ms
    if wan.intra_region_mbps is not None:
        raw["intra_region_mbps"] = wan.intra_region_mbps
    return raw


def plan_network(cfg: dict, num_nodes: int) -> NetworkConfig:
    """The `network` section checked and expanded into one LinkSpec per node."""
    net = _profile(cfg)
    stragglers: tuple[int, ...] = ()
    regions: tuple[str, ...] = ()
    if isinstance(net, Geo):
        links, regions = _geo_links(net, num_nodes)
    else:
        links, stragglers = _access_links(net, num_nodes)
    for node, over in net.overrides.items():
        key = f"network.overrides.{node}"
        node_id = int(node) if str(node).isdigit() else -1
        require(0 <= node_id < num_nodes, key, "is not a node id", f"use 0..{num_nodes - 1}")
        require(
            isinstance(over, dict) and set(over) <= {"up_mbps", "down_mbps", "latency_ms"},
            key,
            "must map up_mbps/down_mbps/latency_ms to numbers",
            "fix the keys",
        )
        for k, value in over.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            require(number, f"{key}.{k}", f"{value!r} is not a number", "fix the value")
            at_least(value, 1e-6 if k != "latency_ms" else 0, f"{key}.{k}")
            links[node_id][k] = float(value)
    return NetworkConfig(
        name=net.name,
        links=tuple(LinkSpec(**link) for link in links),
        stragglers=stragglers,
        regions=regions,
    )
