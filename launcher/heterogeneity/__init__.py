"""Heterogeneity from real traces: FedScale device capacity (per-node step time and link
rates), FedScale availability (leave and join in emulated time) and a WAN matrix (the geo
profile); which trace client is which node is a seeded draw, kept in config.json."""

from __future__ import annotations

import dataclasses
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from launcher.heterogeneity.fedscale import (
    check_enough,
    read_availability,
    read_devices,
)
from node.checks import at_least, hinted
from transport import Action, LinkSpec


@dataclass
class TracesSection:
    """The `traces` section: files (a relative path is from the working directory) and how
    their time and rates map onto the run's."""

    device: str | None = None  # FedScale client_device_capacity (pickle) or its CSV
    availability: str | None = None  # FedScale client_behave_trace (pickle) or its CSV
    time_scale: float = hinted("emulated seconds per trace second, e.g. 0.001", 1.0)
    offset: float = hinted("the trace second at emulated 0, e.g. 3600", 0.0)
    rate_scale: float = hinted("Mbit/s per trace Mbit/s, e.g. 1.0", 1.0)
    seed: int = 0  # which trace clients become the nodes

    def __post_init__(self):
        at_least(self.time_scale, 1e-12, "traces.time_scale")
        at_least(self.offset, 0.0, "traces.offset")
        at_least(self.rate_scale, 1e-12, "traces.rate_scale")


@dataclass(frozen=True, kw_only=True)
class TracePlan:
    """What the traces made of the run, kept in config.json: each node's trace client."""

    device_file: str | None = None
    device_clients: tuple[int, ...] = ()  # node i is client device_clients[i]
    availability_file: str | None = None
    availability_clients: tuple[int, ...] = ()
    time_scale: float = 1.0
    offset: float = 0.0


def _path(value: str, cwd: str | None) -> Path:
    path = Path(value)
    return path if path.is_absolute() else Path(cwd or ".") / path


def draw(clients, num_nodes: int, seed: int, salt: int) -> tuple[int, ...]:
    """`num_nodes` distinct clients, a seeded draw: the same run, the same clients."""
    return tuple(random.Random(seed * 1_000_003 + salt).sample(sorted(clients), num_nodes))


@dataclass(frozen=True)
class Heterogeneity:
    """What the traces change in a run: per-node step times and (up, down) rates (None: no
    device trace), the leaves and joins (none without an availability trace), the record."""

    step_times: tuple[float, ...] | None = None
    rates: tuple[tuple[float, float], ...] | None = None
    actions: tuple[Action, ...] = ()
    plan: TracePlan | None = None


def heterogeneity(
    section: TracesSection, num_nodes: int, duration: float, step_time: float, cwd: str | None
) -> Heterogeneity:
    """The `traces` section applied to a run of `num_nodes` for `duration` emulated seconds."""
    if not (section.device or section.availability):
        return Heterogeneity()
    steps = rates = None
    actions: list[Action] = []
    plan = TracePlan(time_scale=section.time_scale, offset=section.offset)
    if section.device:
        steps, rates, clients, path = device_heterogeneity(section, num_nodes, step_time, cwd)
        plan = dataclasses.replace(plan, device_file=str(path), device_clients=clients)
    if section.availability:
        actions, clients, path = availability_actions(section, num_nodes, duration, cwd)
        plan = dataclasses.replace(plan, availability_file=str(path), availability_clients=clients)
    return Heterogeneity(steps, rates, tuple(actions), plan)


def device_heterogeneity(
    section: TracesSection, num_nodes: int, step_time: float, cwd: str | None
) -> tuple[tuple[float, ...], tuple[tuple[float, float], ...], tuple[int, ...], Path]:
    """Per node (step time, (up, down) Mbit/s): the trace's compute time scaled so that the
    median chosen device takes `step_time`, its kbit/s as Mbit/s times `rate_scale`."""
    path = _path(section.device, cwd)
    devices = read_devices(path)
    check_enough(len(devices), num_nodes, "traces.device", path)
    chosen = draw(devices, num_nodes, section.seed, 1)
    median = statistics.median(devices[c].compute_ms for c in chosen)
    steps = tuple(step_time * devices[c].compute_ms / median for c in chosen)
    scale = section.rate_scale / 1000
    rates = tuple((devices[c].up_kbps * scale, devices[c].down_kbps * scale) for c in chosen)
    return steps, rates, chosen, path


def with_rates(links: tuple[LinkSpec, ...], rates) -> tuple[LinkSpec, ...]:
    return tuple(
        dataclasses.replace(link, up_mbps=up, down_mbps=down)
        for link, (up, down) in zip(links, rates, strict=True)
    )


def availability_actions(
    section: TracesSection, num_nodes: int, duration: float, cwd: str | None
) -> tuple[list[Action], tuple[int, ...], Path]:
    """Leave and join actions that keep each node up exactly in its client's active intervals,
    mapped to emulated time as (trace second - offset) x time_scale, within the run. A node
    whose client is away at the start starts away (its first event a join), one never active
    in the run leaves at 0."""
    path = _path(section.availability, cwd)
    spans = read_availability(path)
    check_enough(len(spans), num_nodes, "traces.availability", path)
    chosen = draw(spans, num_nodes, section.seed, 2)
    actions = []
    for node, client in enumerate(chosen):
        where = f"traces.availability ({path} client {client})"
        up = []  # emulated [start, end) within the run, merged where they touch
        for a, b in spans[client]:
            # rounded to the microsecond: instants in the run, not float noise
            start = round(max(0.0, (a - section.offset) * section.time_scale), 6)
            end = round(min(duration, (b - section.offset) * section.time_scale), 6)
            if end <= start:
                continue
            if up and start <= up[-1][1]:
                up[-1] = (up[-1][0], max(up[-1][1], end))
            else:
                up.append((start, end))
        if not up:
            actions.append(Action(0.0, node, "leave", node, {}, where))
            continue
        for start, end in up:
            if start > 0.0:
                actions.append(Action(start, node, "join", node, {"model": "kept"}, where))
            if end < duration:
                actions.append(Action(end, node, "leave", node, {}, where))
    return actions, chosen, path
