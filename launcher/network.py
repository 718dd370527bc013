"""Plans the network: expands a profile (uniform, stragglers, geo) and per-node overrides into
one link per node, after checking every key of the `network` section."""

from __future__ import annotations

import math
from dataclasses import dataclass

from node.config import LinkSpec, number, require, section

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


def node_ids(value, key: str, num_nodes: int) -> tuple[int, ...]:
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
    rate = number(net, "rate_mbps", "network.", low=1e-6)
    stragglers: tuple[int, ...] = ()
    slowdown = 1.0
    if name == "stragglers":
        slowdown = number(
            net, "slowdown", "network.", low=1.0, fix="e.g. 5 for 1/5 of the bandwidth"
        )
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
            stragglers = node_ids(list(ids), "network.straggler_ids", num_nodes)
        else:
            if count is None:
                fraction = number(net, "straggler_fraction", "network.", low=0.0, high=1.0)
                # At least one straggler when a fraction is asked for, so small runs keep the shape.
                count = max(1, round(fraction * num_nodes)) if fraction > 0 else 0
            count = number({"n": count}, "n", "", kind=int, low=0)
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
    per = number(net, "nodes_per_region", "network.", kind=int, low=1)
    count = len(names)
    if net.get("num_regions") is not None:
        count = number(net, "num_regions", "network.", kind=int, low=1, high=len(names))
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
            pair[frozenset((a, b))] = number(row, b, f"{key}.", low=1e-6)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            require(
                frozenset((a, b)) in pair,
                f"network.matrix_mbps.{a}.{b}",
                f"the pair {a}-{b} is missing",
                f"add network.matrix_mbps.{a}.{b} (Mbit/s, symmetric: once per pair)",
            )
    scale = number(net, "rate_scale", "network.", low=1e-6, fix="e.g. 1.0 for the rates as given")
    intra = number(net, "intra_region_mbps", "network.", low=1e-6)
    access = {}
    for k in ("uplink_mbps", "downlink_mbps"):
        access[k] = math.inf
        if net.get(k) is not None:
            access[k] = scale * number(net, k, "network.", low=1e-6, fix="Mbit/s, or null")
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


def plan_network(cfg: dict, num_nodes: int) -> NetworkConfig:
    """The `network` section checked and expanded into one LinkSpec per node."""
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
    net = section(cfg, "network", NETWORK_KEYS | NETWORK_PROFILES.get(name, frozenset()))
    latency = number(net, "latency_ms", "network.", low=0)
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
            links[node_id][k] = number(over, k, key + ".", low=1e-6 if k != "latency_ms" else 0)
    return NetworkConfig(
        name=name,
        links=tuple(LinkSpec(**link) for link in links),
        stragglers=stragglers,
        regions=regions,
    )
