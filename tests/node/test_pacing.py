"""A node's pacer on a fake clock: bursts held to their emulated end, lag and slack counted,
a round the period cannot finish skipped; and the snapshots it leaves at evaluation instants."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import torch

from node.counters import fresh_counters
from node.pacing import Pacer
from node.snapshots import Snapshots
from node.timeline import Timeline


class FakeClock:
    """Emulated time that moves only when told: `lag` seconds late at every instant reached."""

    def __init__(self, lag: float = 0.0):
        self.t, self.lag, self.quiet = 0.0, lag, []

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float, stop) -> None:
        self.t = max(self.t, t)

    def quiet_until(self, t: float) -> None:
        self.quiet.append(t)


def pacer(tmp_path, burst: int, duration: float = 1.0, pace: bool = True):
    spec = SimpleNamespace(
        step_time=0.1, duration=duration, pace=pace, algorithm=SimpleNamespace(local_steps=4)
    )
    counters = fresh_counters()
    p = Pacer(spec, burst, threading.Event(), counters, Timeline(tmp_path / "t.jsonl", 0))
    return p, counters


def test_a_round_is_one_burst_held_until_its_end_then_handed_over(tmp_path):
    p, counters = pacer(tmp_path, burst=4)
    clock = FakeClock()
    p.start(clock, gate=SimpleNamespace(acquire=lambda deadline: None, release=lambda: None))
    handed = []
    losses, received = p.compute_round(lambda: 1.0, lambda t: handed.append(t) or 2, print)
    assert losses == [1.0] * 4 and received == 2
    assert handed == [p.deadline] and abs(p.deadline - 0.4) < 1e-12
    assert clock.t == p.deadline and clock.quiet == [p.deadline]  # nothing sent before it
    assert counters["late_actions"] == 0 and counters["slack_min"] == 1.0  # computed at once


def test_per_step_bursts_arriving_late_count_lag(tmp_path):
    p, counters = pacer(tmp_path, burst=1)
    clock = FakeClock()

    def step():  # each step takes 0.15 emulated seconds of a 0.1 s step
        clock.t += 0.15
        return 0.0

    p.start(clock, gate=None)  # one step a burst: never gated
    losses, _ = p.compute_round(step, lambda t: 0, print)
    assert len(losses) == 4 and counters["late_actions"] == 4
    assert abs(counters["behind_max"] - 0.2) < 1e-9 and abs(p.behind_round - 0.2) < 1e-9
    assert counters["slack_min"] < 0


def test_a_round_the_period_cannot_finish_is_skipped_to_its_end(tmp_path):
    p, counters = pacer(tmp_path, burst=4)
    clock = FakeClock()
    p.start(clock, gate=None)
    p.enter_period(0.8, 1.0)  # two of the round's four steps fit
    skipped, steps = [], []
    losses, received = p.compute_round(lambda: steps.append(1) or 0.0, print, skipped.append)
    assert losses == [] and received == 0 and steps == []
    assert abs(skipped[0] - 1.0) < 1e-12 and p.deadline == skipped[0] and clock.t == 1.0
    assert p.round_end() == (p.deadline, False)


def test_snapshots_write_each_instant_and_skip_those_a_node_was_away(tmp_path):
    spec = SimpleNamespace(node_id=3, eval_interval=0.5, run_dir=str(tmp_path))
    snapshots = Snapshots(spec, checkpoint=tmp_path / "ck.npy")
    snapshots.begin(torch.zeros(2))
    snapshots.until(0.99)
    snapshots.settle(torch.ones(2))
    snapshots.until(1.0)
    snapshots.resume(2.2, torch.full((2,), 7.0))  # away from 1.0 to 2.2
    snapshots.until(2.6)
    snapshots.finish(2.7)
    names = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert names == [f"n003_t{ms:09d}.npy" for ms in (500, 1000, 2500, 2700)]
    assert np.load(tmp_path / "snapshots" / "n003_t000000500.npy").tolist() == [0.0, 0.0]
    assert np.load(tmp_path / "snapshots" / "n003_t000001000.npy").tolist() == [1.0, 1.0]
    assert np.load(tmp_path / "ck.npy").tolist() == [7.0, 7.0]  # the last written
