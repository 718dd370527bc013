"""Chooses the time-dilation factor on this host from what the run does: a burst of local
steps on every node through the compute gate, then trial rounds of the configured algorithm
(exchange, merge, snapshot, through the shaped transport) at candidate factors, keeping the
smallest factor at which no node fell behind."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from node import control
from transport import DilatedClock

log = logging.getLogger(__name__)

BURST_STEPS = 64  # per node, back to back inside the gate
MAX_TRIALS = 4
# A trial passes when every node finished each round's computation (first round aside) with
# at least this share of the round to spare: the run has the evaluators and the host's jitter
# on top. Measured here (60 nodes, default experiment, 14 emulated s): at tdf 9.78, whose
# trial passed with 18% to spare, four runs lagged by 60-770 ms, in stretches of rounds where
# every node's CPU per step rose by up to 40% at once (not garbage collection: 0.06 s per
# node per run); at 11.38 (33% to spare) none did. The nolag benchmark (2026-11-30, 18 runs of
# 4 emulated s): artifact_7of60 with DivShare at 13.44, whose trial passed with 20.1% to spare,
# lagged by 607 ms; the runs whose trials passed with 22% or more did not.
MIN_SLACK = 0.25
CLOSE_ENOUGH = 0.95  # a candidate within 5% of the smallest pass is not worth a trial
# After a failure, the next factor is at most this many times the failed one. A node that fell
# behind has a slack below zero that says how late it was, not how much faster it must go:
# with a step a burst (LASGD, AD-PSGD atomic) the span is one step, and 60 LASGD nodes 120 ms
# behind at tdf 11.6 read -2,488%, which the slack rule turned into a next trial at about 375.
MAX_RAISE = 2.5
# wall seconds between an announced start (a trial's, the run's) and its emulated 0: for every
# PUSH socket to connect
START_SLACK = 1.0


@dataclass
class Trial:
    """What one trial at factor `tdf` showed."""

    tdf: float
    passed: bool
    behind_max_s: float  # emulated: the latest any node acted after its instant
    slack_min: float  # the least share of a burst's span any node had to spare
    late_delivery_share: float
    demand: float  # CPU seconds of all nodes per emulated second (every thread)
    demand_max: float  # the most any one node needed
    wall_s: float
    delivered: int = 0  # messages the trial's exchange delivered, over every node
    # the busiest machine's nodes' demand per core of that machine (None: demand / cores)
    host_load: float | None = None


@dataclass(frozen=True)
class Hosts:
    """Which machine holds each node, and each machine's cores: the compute limit and a
    trial's load are those of the busiest machine (one machine on the local backend)."""

    machine_of: dict[int, str]
    cores: dict[str, int]

    @classmethod
    def one(cls, nodes, cores: int) -> Hosts:
        return cls({n: "local" for n in nodes}, {"local": cores})

    def split(self, per_node: dict[int, float]) -> dict[str, dict[int, float]]:
        """`per_node` by machine."""
        machines: dict[str, dict[int, float]] = defaultdict(dict)
        for node, value in per_node.items():
            machines[self.machine_of[node]][node] = value
        return dict(machines)

    def busiest(self, per_node: dict[int, float]) -> float:
        """The largest, over machines, of the sum of `per_node` over its nodes per core."""
        return max(sum(v.values()) / self.cores[m] for m, v in self.split(per_node).items())


def compute_limit(step_times: tuple[float, ...], cpu_per_step: dict[int, float], cores: int):
    """The factor at which the host's cores are just busy computing local steps alone:
    sum over nodes of (CPU per step / emulated step time), divided by the cores."""
    return sum(cpu / step_times[node] for node, cpu in cpu_per_step.items()) / cores


def needed(trial: Trial, cores: int) -> float:
    """The factor a trial's measurements call for: the one at which its tightest round would
    have had `MIN_SLACK` to spare (the wall time a round keeps the cores busy does not depend
    on the factor, the round's span grows with it), and never less than the cores' full load
    or one core for the busiest node (its training thread cannot use two)."""
    at_min_slack = trial.tdf * (1.0 - trial.slack_min) / (1.0 - MIN_SLACK)
    load = trial.demand / cores if trial.host_load is None else trial.host_load
    return max(1.0, at_min_slack, load, trial.demand_max)


def next_factor(trials: list[Trial], cores: int) -> float | None:
    """The factor to try next, or None once the smallest passing one is as good as known.

    After a pass: the factor its measurements need, if smaller (and above every failure).
    After a failure: half again, or what its measurements need up to `MAX_RAISE` times the
    failed factor; between the failure and the smallest pass if there is one."""
    if len(trials) >= MAX_TRIALS:
        return None
    last = trials[-1]
    passed = [t.tdf for t in trials if t.passed]
    failed = [t.tdf for t in trials if not t.passed]
    if last.passed:
        candidate = max(needed(last, cores), max(failed, default=0) * 1.1)
    elif passed:
        candidate = (last.tdf + min(passed)) / 2
    else:
        return min(max(last.tdf * 1.5, needed(last, cores)), last.tdf * MAX_RAISE)
    return candidate if candidate < CLOSE_ENOUGH * min(passed) else None


def chosen_factor(trials: list[Trial]) -> float:
    """The smallest factor that passed; if none did, half again the largest tried."""
    passed = [t.tdf for t in trials if t.passed]
    return min(passed) if passed else 1.5 * max(t.tdf for t in trials)


class Calibrator:
    """Drives the nodes through the calibration over `fleet`'s channels (launcher.running.fleet:
    broadcast, collect). Every machine's nodes run each trial at once, on their own machine:
    the factor chosen is the smallest the busiest machine keeps up at (the largest any machine
    needs)."""

    def __init__(self, fleet, run, hosts: Hosts):
        self.fleet, self.run, self.hosts = fleet, run, hosts
        self.cores = sum(hosts.cores.values())

    def __call__(self) -> tuple[float, dict]:
        bursts = self._burst()
        limit = max(  # the busiest machine's
            compute_limit(self.run.step_times, share, self.hosts.cores[machine])
            for machine, share in self.hosts.split(bursts).items()
        )
        trials: list[Trial] = []
        tdf = max(1.0, 1.5 * limit)
        while tdf is not None:
            trials.append(self._trial(tdf))
            last = trials[-1]
            log.info(
                "calibration: tdf %.2f %s (%.0f%% to spare at the least, late deliveries %.1f%%)",
                tdf,
                "kept up" if last.passed else "too tight",
                100 * last.slack_min,
                100 * last.late_delivery_share,
            )
            tdf = next_factor(trials, self.cores)
        chosen = chosen_factor(trials) * self.run.calibration_margin
        record = {
            "mode": "auto",
            "cores": self.cores,
            "machines": len(self.hosts.cores),
            "burst_steps": BURST_STEPS,
            "cpu_per_step_median_s": float(np.median(list(bursts.values()))),
            "cpu_per_step_max_s": max(bursts.values()),
            "compute_limit_tdf": limit,
            "efficiency": limit / chosen,
            "margin": self.run.calibration_margin,
            "min_slack": MIN_SLACK,
            "trial_rounds": self.run.calibration_rounds,
            "trials": [asdict(t) for t in trials],
            "verified": any(t.passed for t in trials),
        }
        return chosen, record

    def _burst(self) -> dict[int, float]:
        self.fleet.broadcast(control.Calibrate(BURST_STEPS))
        reports = self.fleet.collect(control.Calibrated, time.monotonic())
        return {n: r.cpu_per_step for n, r in reports.items()}

    def _trial(self, tdf: float) -> Trial:
        started = time.monotonic()
        self.fleet.broadcast(control.TrialPrepare())
        ready = self.fleet.collect(control.TrialReady, time.monotonic())
        peers = {node: message.endpoint for node, message in ready.items()}
        t0 = time.monotonic() + START_SLACK
        rounds = self.run.calibration_rounds
        self.fleet.broadcast(control.TrialStart(peers, t0, tdf, rounds))
        span = rounds * max(self.run.step_times) * self.run.algorithm.local_steps * tdf
        reports = self.fleet.collect(control.TrialDone, t0 + span)
        done = [r.stats for r in reports.values()]
        behind = max(r["behind_max"] for r in done)
        slack = min(r["slack_min"] for r in done)
        delivered = sum(r["delivered"] for r in done)
        late = sum(r["late_deliveries"] for r in done) / delivered if delivered else 0.0
        demands = [r["cpu_per_emulated_s"] for r in done]
        return Trial(
            tdf=tdf,
            passed=behind == 0 and slack >= MIN_SLACK and late <= 0.01,
            behind_max_s=behind,
            slack_min=slack,
            late_delivery_share=late,
            demand=sum(demands),
            demand_max=max(demands),
            wall_s=time.monotonic() - started,
            delivered=delivered,
            host_load=self.hosts.busiest(
                {n: r.stats["cpu_per_emulated_s"] for n, r in reports.items()}
            ),
        )


def start_dilated(fleet, tdf: float, auto: bool) -> DilatedClock:
    """A run's start on dilated wall time (`fleet`: past its barrier, its clocks synchronised):
    every node told the factor `tdf` (calibrated if `auto`, else given) and a shared t0; the
    run's clock."""
    log.info("time-dilation factor %.2f (%s)", tdf, "auto" if auto else "fixed")
    clock = DilatedClock(time.monotonic() + START_SLACK, tdf)
    fleet.broadcast(control.Start(clock.t0, tdf))
    return clock
