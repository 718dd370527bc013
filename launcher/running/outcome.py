"""What the launcher saw of a run: per-node reports, failures, timings, memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from node import control


@dataclass
class Outcome:
    """What the launcher saw: per-node reports, failures, timings, memory."""

    done: dict[int, control.Done] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    exit_codes: dict[int, int | None] = field(default_factory=dict)
    evals: list[dict] = field(default_factory=list)
    progress: dict[int, control.Progress] = field(default_factory=dict)
    interrupted: bool = False
    ready_seconds: float | None = None
    start_seconds: float | None = None  # from the launch to training's start (calibration too)
    wall_seconds: float = 0.0
    pss_mib: dict[int, float] = field(default_factory=dict)  # at the barrier
    pss_run_mib: dict[int, float] = field(default_factory=dict)  # mid-run
    evaluation_complete: bool = False
    pids: dict = field(default_factory=dict)
    tdf: float | None = None
    calibration: dict = field(default_factory=lambda: {"mode": "fixed"})

    startup_error: str | None = None
    training_wall_seconds: float | None = None  # from t0 until the last node exited
    # Nodes that died while the others trained: the emulated instant the launcher saw it.
    departed: dict[int, float] = field(default_factory=dict)
    # A scenario's crashes: the emulated instants the launcher killed each node; `killed`:
    # the nodes whose last process it killed; `rejoined`: when each came back (a new process)
    crashed: dict[int, list[float]] = field(default_factory=dict)
    killed: set[int] = field(default_factory=set)
    rejoined: dict[int, list[float]] = field(default_factory=dict)
    clocks: dict = field(default_factory=dict)  # node -> ClockEstimate, from the start-up
    # Virtual time: node 0's bare step (CPU and wall seconds) and what the keeper did
    bare_step: dict | None = None
    keeper: dict = field(default_factory=dict)
    cores: int | None = None  # of the busiest machine's share: what the compute limit divides
    control: dict = field(default_factory=dict)  # what the control socket turned away

    @property
    def status(self) -> str:
        """ok (a scenario's crashes included); degraded: some nodes died unplanned during the
        run and the others went on to its end; failed: nothing was emulated, the run was
        interrupted, or every node died."""
        unplanned = {n: c for n, c in self.exit_codes.items() if n not in self.killed}
        broken = bool(self.errors) or any(unplanned.values())
        if self.interrupted or self.startup_error is not None:
            return "failed"
        if broken and unplanned and all(unplanned.values()):
            return "failed"
        return "degraded" if broken else "ok"


class StartupError(RuntimeError):
    """The nodes could not all get to the shared start: nothing was emulated."""
