"""Starts one process per node (where the backend says), runs the barrier, starts the run's clock
(the launcher's virtual clock, or dilated wall time after calibration), monitors."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import signal
import time

from launcher.config.plan import Plan
from launcher.report.metric import METRICS
from launcher.running.backends import make_backend
from launcher.running.calibration import Calibrator, start_dilated
from launcher.running.fleet import Fleet
from launcher.running.outcome import Outcome, StartupError
from launcher.running.processes import CrashSchedule
from launcher.running.progress import ProgressDisplay, status
from launcher.running.rejoin import Rejoins
from launcher.running.virtual_time import (
    KeeperThread,
    bare_step,
    handle_stalls,
    keeper_record,
    start_virtual,
    time_keeper,
)
from node import control
from node.data import TASKS
from node.files import write_json_atomic
from transport import Reachability
from transport.control_channel import ControlServer

log = logging.getLogger(__name__)


class Launch:
    """One run's processes from start to reaping: the barrier, the calibration, the monitor.
    Its fields and its outcome change only in its own methods; the processes and their channels
    are its `fleet`'s. Rejoins (launcher.running.rejoin) read `clock`, `keeper`, `fleet` and the
    outcome, and ask for the rest: `restart`, `peers_message`, `start_message`."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.outcome = Outcome()
        self.fleet = Fleet(self._record, plan.run.start_timeout)
        self.backend = None  # where processes start and how they stop: local or ray
        self.crashes = CrashSchedule()  # the scenario's: the launcher kills them
        self.peers: dict[int, str] = {}
        self.gates: dict[int, str | None] = {}  # each node's compute gate (its host's)
        self.clock = None  # the run's: the time keeper (virtual) or a DilatedClock (wall)
        self.keeper: KeeperThread | None = None
        self.t0 = 0.0  # wall instant training started

    def run(self) -> Outcome:
        run, started = self.plan.run, time.monotonic()
        for sub in ("snapshots", "nodes", "eval"):
            (self.plan.run_dir / sub).mkdir(parents=True, exist_ok=True)
        previous = signal.getsignal(signal.SIGINT)
        # `kill` stops as cleanly as Ctrl-C (default_int_handler raises KeyboardInterrupt)
        previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            self.backend = backend = make_backend(self.plan)
            # Nodes carry the run's keys (if CURVE is on): the control channel speaks CURVE too.
            curve = self.plan.nodes[0].curve if self.plan.nodes else None
            self.fleet.start(backend, ControlServer(backend.control_host(), curve))
            self._write_pids()
            # In virtual time the keeper is the compute gate: it wakes a machine's cores' worth
            if run.clock == "wall":
                self.gates = backend.start_gates()
            else:
                self.gates = {spec.node_id: None for spec in self.plan.nodes}
            self.peers = self._barrier(started)
            for node in self.fleet.connected():  # each its own machine's gate
                self.fleet.broadcast(self.peers_message(node), [node])
            self.fleet.collect(control.Connected, started)
            self.outcome.cores = sum(backend.hosts().cores.values())
            if run.clock == "virtual":
                self._start_virtual(started)
            else:
                self._start_dilated()
            self.outcome.start_seconds = self.t0 - started
            self._monitor()
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            log.warning("interrupted: stopping every node")
        except StartupError as err:
            self.outcome.startup_error = str(err)
            log.error("start-up failed: %s", err)
        finally:
            # A second Ctrl-C or kill must not skip the clean-up, which is bounded anyway.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                self._stop()
            finally:
                signal.signal(signal.SIGINT, previous)
                signal.signal(signal.SIGTERM, previous_term)
        self.outcome.wall_seconds = time.monotonic() - started
        return self.outcome

    def _record(self, sender: int, message) -> None:
        """What a node (`sender`) or an evaluator (-1 - its number) reports, into the outcome."""
        if sender < 0:
            if isinstance(message, control.Evaluated):
                self.outcome.evals.append(message.record())
        elif isinstance(message, control.Progress):
            self.outcome.progress[sender] = message
        elif isinstance(message, control.Done):
            self.outcome.done[sender] = message
        elif isinstance(message, control.Failed):
            self.outcome.errors[sender] = message.error

    def _write_pids(self) -> None:
        """For operators and tests: which OS process is which node (pids.json)."""
        self.outcome.pids = self.fleet.pids()
        write_json_atomic(self.plan.run_dir / "pids.json", self.outcome.pids)

    def _barrier(self, started: float) -> dict[int, str]:
        """Wait until every node has bound its socket and loaded its shard."""
        ready = self.fleet.collect(control.Ready, started)
        self.outcome.ready_seconds = time.monotonic() - started
        self.outcome.pss_mib = self.fleet.memory()
        log.info("%d nodes ready in %.1f s", len(ready), self.outcome.ready_seconds)
        peers = {node: message.endpoint for node, message in ready.items()}
        # For operators and tools (the reliability benchmark's fuzzer): where each node listens
        write_json_atomic(
            self.plan.run_dir / "endpoints.json", {str(n): e for n, e in peers.items()}
        )
        return peers

    def _start_virtual(self, started: float) -> None:
        """Node 0 times a bare burst alone (what the efficiency is judged by), then the time
        keeper starts and every node follows it from emulated 0."""
        hosts = self.backend.hosts()
        self.outcome.calibration = {"mode": "virtual"}
        self.outcome.bare_step = bare_step(self.fleet, started)
        self.keeper = self.clock = time_keeper(self.plan, hosts, self.backend.control_host())
        self.t0 = start_virtual(self.fleet, self.keeper)

    def _start_dilated(self) -> None:
        """Clock offsets, the factor (calibrated or given), a shared t0."""
        run = self.plan.run
        self.outcome.clocks = self.fleet.synchronise(run.start_timeout)
        if run.tdf is None:
            calibrate = Calibrator(self.fleet, run, self.backend.hosts())
            self.outcome.tdf, self.outcome.calibration = calibrate()
        else:
            self.outcome.tdf = run.tdf
        self.clock = start_dilated(self.fleet, self.outcome.tdf, auto=run.tdf is None)
        self.t0 = self.clock.t0

    def _stop(self) -> None:
        """Every process stopped and reaped, the keeper and the control channel closed; what
        each ended with recorded."""
        for n, code in self.fleet.stop(self.plan.run.stop_grace).items():
            self.outcome.exit_codes[n] = code
            planned = n in self.outcome.killed
            if code not in (0, None) and n not in self.outcome.errors and not planned:
                self.outcome.errors[n] = f"exited with code {code}"
        if self.keeper is not None:
            self.keeper.close()
            self.outcome.keeper = keeper_record(self.keeper)
        finish = not self.outcome.interrupted  # after Ctrl-C the evaluators just stop
        complete = self.fleet.finish_evaluators(finish, self.plan.run.stop_grace)
        self.outcome.evaluation_complete = complete
        if self.backend is not None:
            self.backend.close()
        counts = self.fleet.close()
        if counts is not None:
            self.outcome.control = counts
        if self.plan.nodes and self.plan.nodes[0].bind.startswith("ipc://"):
            shutil.rmtree(self.plan.nodes[0].bind[len("ipc://") :], ignore_errors=True)

    # ---- for rejoins -------------------------------------------------------------------------
    def peers_message(self, node: int) -> control.Peers:
        """Where every node listens, and `node`'s compute gate."""
        return control.Peers(self.peers, self.gates[node])

    def restart(self, node: int, t: float) -> None:
        """`node`'s new process (its old one is dead), to join at emulated `t` listening where
        the old one did; watched as any other from now on."""
        spec = dataclasses.replace(self.plan.nodes[node], start_at=t, endpoint=self.peers[node])
        self.fleet.replace(node, spec)
        self.outcome.exit_codes.pop(node, None)
        self.outcome.killed.discard(node)
        self.outcome.rejoined.setdefault(node, []).append(t)
        self._write_pids()

    def start_message(self, node: int, probe_timeout: float) -> control.Start:
        """The run's clock for `node`'s new process: the time keeper (its next incarnation), or
        the shared t0 and factor after probing its clock, as every node's at the start."""
        keeper = self.keeper
        if keeper is not None:
            incarnation = len(self.outcome.rejoined[node])
            endpoint = keeper.address.endpoint
            t, gen = keeper.keeper.t, keeper.keeper.gen
            return control.Start(0.0, 1.0, endpoint, incarnation, t, gen)
        self.outcome.clocks.update(self.fleet.synchronise(probe_timeout, [node]))
        return control.Start(self.clock.t0, self.clock.tdf)

    # ---- run ---------------------------------------------------------------------------------
    def _monitor(self) -> None:
        display = ProgressDisplay(self.plan.run.duration, self.plan.run.progress_interval)
        try:
            with display.logging_through_bar():
                self._watch(display)
        finally:
            display.close()

    def _watch(self, display: ProgressDisplay) -> None:
        run, clock, fleet = self.plan.run, self.clock, self.fleet
        hard_deadline = None
        if not clock.virtual:  # paced nodes end at the run's end; un-paced ones (benchmarks)
            tdf = self.outcome.tdf  # when their steps do. Virtual time has its watchdog.
            slack = clock.wall_until(run.duration) + 60.0 + 10 * tdf if run.pace else 3600.0
            hard_deadline = time.monotonic() + slack
        # Reading smaps takes each node's mmap lock: sample memory once, mid-run, not repeatedly.
        pss_due = True
        self.crashes, reach = CrashSchedule(run.scenario), Reachability(run.scenario)
        rejoins = Rejoins(self, run.scenario)
        metric = METRICS[TASKS[run.dataset.name].metric]  # what the progress line shows
        while True:
            rejoins.step(fleet.poll(self._crash_due(0.2)))
            if pss_due and clock.now() >= 0.5 * run.duration:
                self.outcome.pss_run_mib, pss_due = fleet.memory(), False
            finished, nodes = fleet.finished(), fleet.node_ids()
            for n in finished - set(self.outcome.exit_codes):
                self.outcome.exit_codes[n] = fleet.exitcode(n)
                self.backend.forget(n)  # a node dead while holding its gate must not block it
                if n in self.outcome.killed:
                    log.info(
                        "node %d crashed at t=%.2f s, as scheduled", n, self.outcome.crashed[n][-1]
                    )
                elif fleet.exitcode(n) != 0:
                    reason = fleet.exit_reason(n)  # a Ray actor's
                    code = fleet.exitcode(n)
                    self.outcome.errors.setdefault(n, reason or f"exited with code {code}")
                    self._departed(n)
            if len(finished) == len(nodes):
                self.outcome.training_wall_seconds = time.monotonic() - self.t0
                ended = sum(code == 0 for code in self.outcome.exit_codes.values())
                per_s = self.outcome.training_wall_seconds / run.duration if clock.virtual else None
                line = status(self.outcome, ended, len(nodes), reach, run.duration, per_s, metric)
                display.finish(run.duration, line)
                return
            if hard_deadline is not None and time.monotonic() > hard_deadline:
                late = sorted(set(nodes) - finished)
                for n in late:
                    self.outcome.errors.setdefault(n, "did not finish before the deadline")
                log.error("nodes %s still running past the deadline: stopping them", late)
                return
            if self.keeper is not None:
                stopped = handle_stalls(self.keeper, fleet, run.stall_timeout)
                for n, why in stopped.items():
                    self.outcome.errors.setdefault(n, why)
            t = min(run.duration, max(0.0, clock.now()))
            alive = len(nodes) - len(finished)
            per_s = (time.monotonic() - self.t0) / t if clock.virtual and t > 0 else None
            display.show(t, status(self.outcome, alive, len(nodes), reach, t, per_s, metric))

    def _departed(self, n: int) -> None:
        """`n` died unplanned: its peers and the keeper count on it no more."""
        died = max(0.0, self.clock.now())
        self.outcome.departed[n] = min(self.plan.run.duration, died)
        if self.keeper is not None:
            self.keeper.depart(n)
        self.fleet.tell(control.Departed(n, self.outcome.departed[n]))
        why = self.outcome.errors.get(n, "no report").strip().splitlines()[-1]
        log.error("node %d failed at t=%.2f s: %s", n, died, why)

    def _crash_due(self, wait: float) -> float:
        """Kill hard (SIGKILL, no goodbye) every node whose scheduled crash has come; the wall
        seconds to wait for messages before the next one is due (at most `wait`). In virtual
        time the keeper says when: once everything up to the crash's instant is done."""
        if self.keeper is not None:
            due = []
            while not self.keeper.events.crashes.empty():
                crash = self.keeper.events.crashes.get_nowait()
                due.append((crash.node, crash.t))
        else:
            due = [(n, self.clock.now()) for n in self.crashes.due(self.clock.now())]
        for node, t in due:
            code = self.fleet.exitcode(node)
            if code is None:
                self.fleet.kill(node)  # SIGKILL, or the actor killed
            if code in (None, 0):  # (in virtual time it may have ended on its own at t)
                self.outcome.killed.add(node)
                self.outcome.crashed.setdefault(node, []).append(t)
        if self.keeper is not None:
            return wait
        return max(0.0, min(wait, self.clock.wall_until(self.crashes.next_at())))


def run_plan(plan: Plan) -> Outcome:
    return Launch(plan).run()
