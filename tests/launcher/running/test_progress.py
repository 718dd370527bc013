"""The live progress: one status line from what nodes and evaluators reported; a log line per
interval where the output is not a terminal, a tqdm bar where it is."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

from launcher.report.metric import RMSE
from launcher.running.progress import ProgressDisplay, status


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _outcome():
    stats = [
        {"bytes_sent": 2_000_000, "bytes_dropped": 500_000, "behind_max": 0.0},
        {"bytes_sent": 1_500_000, "bytes_dropped": 0, "behind_max": 0.0123},
    ]
    evals = [
        {"node": 0, "t": 2.0, "accuracy": 0.2},
        {"node": 0, "t": 4.0, "accuracy": 0.4},
        {"node": 1, "t": 2.0, "accuracy": 0.3},
    ]
    progress = {n: SimpleNamespace(stats=s) for n, s in enumerate(stats)}
    return SimpleNamespace(progress=progress, evals=evals)


def test_status_sums_traffic_and_takes_each_nodes_latest_evaluation():
    line = status(_outcome(), alive=2, nodes=3)
    # latest per node: 0.4 (t=4) and 0.3 (t=2): mean 0.35, evaluated up to t=2 for all
    assert line == (
        "2/3 alive | acc 0.350 (evaluated to t=2s) | sent 3.5 MB, dropped 0.5 MB | max lag 12.3 ms"
    )
    assert status(SimpleNamespace(progress={}, evals=[]), 0, 4).startswith("0/4 alive | sent")


def test_a_movielens_run_shows_its_rmse_not_its_accuracy():
    outcome = _outcome()
    for e, loss in zip(outcome.evals, (1.9, 1.1, 1.5), strict=True):
        e["loss"] = loss
    line = status(outcome, alive=2, nodes=3, metric=RMSE)
    assert "| RMSE 1.300 (evaluated to t=2s) |" in line and "acc" not in line


def test_without_a_terminal_a_log_line_every_interval(caplog):
    clock = FakeClock()
    display = ProgressDisplay(duration=10, interval=5, stream=io.StringIO(), clock=clock)
    with caplog.at_level(logging.INFO, logger="launcher.running.progress"):
        for step in range(23):  # 0.5 s apart: lines at 5, 10 s of wall time
            clock.now += 0.5
            display.show(step * 0.1, f"line {step}")
    display.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["t=   0.9/10s emulated | line 9", "t=   1.9/10s emulated | line 19"]


def test_the_end_is_logged_even_before_the_first_interval(caplog):
    clock = FakeClock()
    display = ProgressDisplay(duration=10, interval=5, stream=io.StringIO(), clock=clock)
    with caplog.at_level(logging.INFO, logger="launcher.running.progress"):
        clock.now += 1.0
        display.show(3.0, "not yet")
        display.finish(10.0, "4/4 alive")
    display.close()
    assert [r.getMessage() for r in caplog.records] == ["t=  10.0/10s emulated | 4/4 alive"]


def test_on_a_terminal_a_bar_of_emulated_time_redrawn_at_its_own_pace(caplog):
    clock, terminal = FakeClock(), Terminal()
    display = ProgressDisplay(duration=10, interval=5, stream=terminal, clock=clock)
    with caplog.at_level(logging.INFO, logger="launcher.running.progress"):
        for step in range(1, 5):
            clock.now += 0.3
            display.show(2.5 * step, f"{step}/4 alive")
    display.close()
    assert not caplog.records  # the bar, not the log
    drawn = terminal.getvalue()
    assert "emulated" in drawn and "/10 s" in drawn and "4/4 alive" in drawn
    assert "1/4 alive" not in drawn  # 0.3 s after the start: not redrawn yet
