"""A run's live progress: emulated time against the duration, nodes alive, accuracy so far,
traffic and lag; a tqdm bar on a terminal, a log line every `launch.progress_interval` seconds
elsewhere (hydra's console and the job's log file, CI, tests)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from launcher.report.metric import ACCURACY, Metric

log = logging.getLogger(__name__)
BAR_REFRESH = 0.5  # wall seconds between redraws of the terminal bar


def status(
    outcome,
    alive: int,
    nodes: int,
    reach=None,
    t: float = 0.0,
    wall_per_s: float | None = None,
    metric: Metric = ACCURACY,
) -> str:
    """What the nodes and evaluators reported so far, in one line; the task's metric (accuracy,
    or RMSE for MovieLens) is the mean over the nodes there at emulated `t` (neither dead nor
    away in the scenario `reach`). In virtual time (`wall_per_s` given) nothing lags: the line
    says what an emulated second costs."""
    progress = [p.stats for p in outcome.progress.values()]
    sent = sum(p.get("bytes_sent", 0) for p in progress) / 1e6
    dropped = sum(p.get("bytes_dropped", 0) for p in progress) / 1e6
    behind = max((p.get("behind_max", 0.0) for p in progress), default=0.0)
    latest: dict[int, dict] = {}
    for e in outcome.evals:
        if e["t"] >= latest.get(e["node"], {"t": -1})["t"]:
            latest[e["node"]] = e
    if reach is not None:
        latest = {
            n: e for n, e in latest.items() if reach.is_up(n, t) and n not in outcome.departed
        }
    judged = ""
    if latest:
        mean = sum(e[metric.node_key] for e in latest.values()) / len(latest)
        upto = min(e["t"] for e in latest.values())
        name = "acc" if metric is ACCURACY else metric.name
        judged = f" | {name} {mean:.3f} (evaluated to t={upto:.0f}s)"
    pace = f"max lag {behind * 1000:.1f} ms"
    if wall_per_s is not None:
        pace = f"{wall_per_s:.2f} wall s per emulated s"
    return f"{alive}/{nodes} alive{judged} | sent {sent:.1f} MB, dropped {dropped:.1f} MB | {pace}"


class ProgressDisplay:
    """Shows `status` against emulated time; `show` may be called as often as wished, it
    redraws at its own pace (the clock is injectable for tests)."""

    def __init__(self, duration: float, interval: float, stream=None, clock=time.monotonic):
        self.duration, self.interval, self.clock = duration, interval, clock
        stream = stream if stream is not None else sys.stderr
        self.bar = None
        if stream.isatty():
            self.bar = tqdm(
                total=duration,
                file=stream,
                unit="s",
                desc="emulated",
                bar_format="{desc} {n:.1f}/{total:g} s |{bar}| {postfix} [wall {elapsed}]",
                dynamic_ncols=True,
            )
        self.next_at = clock() + (BAR_REFRESH if self.bar else interval)

    def show(self, t: float, line: str) -> None:
        now = self.clock()
        if now < self.next_at:
            return
        if self.bar is not None:
            self.next_at = now + BAR_REFRESH
            self.bar.n = t
            self.bar.set_postfix_str(line, refresh=False)
            self.bar.refresh()
        else:
            self.next_at += self.interval
            log.info("t=%6.1f/%gs emulated | %s", t, self.duration, line)

    def finish(self, t: float, line: str) -> None:
        """The end of training: the last status is shown whatever the pace, so that even a
        run shorter than one interval leaves its end in the log (or on the bar)."""
        self.next_at = self.clock()
        self.show(t, line)

    def logging_through_bar(self):
        """While the bar is drawn, log messages print above it instead of through it."""
        return logging_redirect_tqdm() if self.bar is not None else contextlib.nullcontext()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
