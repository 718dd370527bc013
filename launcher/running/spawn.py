"""Starts one process per node (where the backend says), runs the barrier, starts the run's clock
(the launcher's virtual clock, or dilated wall time after calibration), monitors."""

from __future__ import annotations

import logging
import multiprocessing as mp
import shutil
import signal
import time

from launcher.config.plan import Plan
from launcher.report.metric import METRICS
from launcher.running.backends import make_backend
from launcher.running.calibration import start_dilated
from launcher.running.outcome import Outcome, StartupError
from launcher.running.processes import (
    CrashSchedule,
    finish_evaluators,
    measure_pss,
    stop_nodes,
    tell,
    write_pids,
)
from launcher.running.progress import ProgressDisplay, status
from launcher.running.rejoin import Rejoins
from launcher.running.virtual_time import KeeperThread, handle_stalls, keeper_record, start_virtual
from node import control
from node.data import TASKS
from node.files import write_json_atomic
from transport import Reachability
from transport.control_channel import Channel, ControlServer

log = logging.getLogger(__name__)


class Launch:
    """One run's processes from start to reaping: the barrier, the calibration, the monitor."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.outcome = Outcome()
        self.nodes: dict[int, mp.Process] = {}
        self.control: ControlServer | None = None
        self.conns: dict[int, Channel] = {}
        self.evaluators: dict[int, mp.Process] = {}
        self.eval_conns: dict[int, Channel] = {}
        self.eval_done: set[int] = set()
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
            self.control = ControlServer(backend.control_host(), curve)
            for w, (proc, conn) in backend.start_evaluators(self.control).items():
                self.evaluators[w], self.eval_conns[w] = proc, conn
            for n, (proc, conn) in backend.start_nodes(self.control).items():
                self.nodes[n], self.conns[n] = proc, conn
            self.outcome.pids = write_pids(self.plan.run_dir, self.nodes, self.evaluators)
            # In virtual time the keeper is the compute gate: it wakes a machine's cores' worth
            if run.clock == "wall":
                self.gates = backend.start_gates()
            else:
                self.gates = {spec.node_id: None for spec in self.plan.nodes}
            self.peers = peers = self._barrier(started)
            for node, conn in list(self.conns.items()):  # each its own machine's gate
                self._broadcast(control.Peers(peers, self.gates[node]), {node: conn})
            self._collect(control.Connected, started)
            self.outcome.cores = sum(backend.hosts().cores.values())
            if run.clock == "virtual":
                start_virtual(self, started)
            else:
                start_dilated(self)
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
                stop_nodes(self)
                if self.keeper is not None:
                    self.keeper.close()
                    self.outcome.keeper = keeper_record(self.keeper)
                finish_evaluators(self)
                if self.backend is not None:
                    self.backend.close()
                if self.control is not None:
                    self.outcome.control = self.control.counts()
                    self.control.close()
                if self.plan.nodes and self.plan.nodes[0].bind.startswith("ipc://"):
                    shutil.rmtree(self.plan.nodes[0].bind[len("ipc://") :], ignore_errors=True)
            finally:
                signal.signal(signal.SIGINT, previous)
                signal.signal(signal.SIGTERM, previous_term)
        self.outcome.wall_seconds = time.monotonic() - started
        return self.outcome

    def _broadcast(self, message, conns: dict | None = None) -> None:
        """Start-up messages to every node (or those of `conns`); a node whose channel is gone
        fails the start cleanly."""
        for node, conn in list((self.conns if conns is None else conns).items()):
            try:
                control.send(conn, message)
            except (OSError, ValueError) as err:  # killed between two start-up steps
                raise StartupError(
                    f"node {node} is gone before the start ({type(err).__name__})"
                ) from err

    def _collect(self, kind: type, started: float) -> dict:
        """One `kind` message from every node, within the start timeout; a death fails fast."""
        return self._collect_from(kind, started, list(self.nodes))

    def _collect_from(self, kind: type, started: float, nodes: list[int]) -> dict:
        got: dict = {}
        deadline = started + self.plan.run.start_timeout
        while len(got) < len(nodes):
            if time.monotonic() > deadline:
                missing = sorted(set(nodes) - set(got))
                raise StartupError(f"nodes {missing} sent no {kind.__name__} in time")
            for node, message in self._poll(0.2):
                if isinstance(message, kind) and node in nodes:
                    got[node] = message
            dead = [n for n, p in self.nodes.items() if p.exitcode is not None]
            if dead:
                raise StartupError(f"nodes {dead} died before the start: {self._errors_text(dead)}")
        return got

    def _barrier(self, started: float) -> dict[int, str]:
        """Wait until every node has bound its socket and loaded its shard."""
        ready = self._collect(control.Ready, started)
        self.outcome.ready_seconds = time.monotonic() - started
        self.outcome.pss_mib = measure_pss(self.nodes)
        log.info("%d nodes ready in %.1f s", len(ready), self.outcome.ready_seconds)
        peers = {node: message.endpoint for node, message in ready.items()}
        # For operators and tools (the reliability benchmark's fuzzer): where each node listens
        write_json_atomic(
            self.plan.run_dir / "endpoints.json", {str(n): e for n, e in peers.items()}
        )
        return peers

    def _errors_text(self, nodes: list[int]) -> str:
        errors = self.outcome.errors
        return "; ".join(errors.get(n, "no report").strip().splitlines()[-1] for n in nodes)

    # ---- run ---------------------------------------------------------------------------------
    def _poll(self, timeout: float) -> list[tuple[int, object]]:
        """Messages from nodes and evaluators; evaluation results are recorded here."""
        if self.control is None:  # the start failed before the channel was open
            return []
        by_conn = {conn: ("node", n) for n, conn in self.conns.items()}
        by_conn.update({conn: ("eval", w) for w, conn in self.eval_conns.items()})
        messages = []
        for conn in self.control.wait(list(by_conn), timeout):
            role, ident = by_conn[conn]
            try:
                message = control.receive(conn, 0)
            except (EOFError, OSError, control.ControlError):
                (self.conns if role == "node" else self.eval_conns).pop(ident, None)
                continue
            if message is None:
                continue
            if role == "eval":
                if isinstance(message, control.Evaluated):
                    self.outcome.evals.append(message.record())
                    self.backend.record_evaluation(ident, message.record())
                elif isinstance(message, control.EvaluatorDone):
                    self.eval_done.add(ident)
                messages.append((-1 - ident, message))
                continue
            if isinstance(message, control.Progress):
                self.outcome.progress[ident] = message
            elif isinstance(message, control.Done):
                self.outcome.done[ident] = message
            elif isinstance(message, control.Failed):
                self.outcome.errors[ident] = message.error
            messages.append((ident, message))
        return messages

    def _monitor(self) -> None:
        display = ProgressDisplay(self.plan.run.duration, self.plan.run.progress_interval)
        try:
            with display.logging_through_bar():
                self._watch(display)
        finally:
            display.close()

    def _watch(self, display: ProgressDisplay) -> None:
        run, clock = self.plan.run, self.clock
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
            rejoins.step(self._poll(self._crash_due(0.2)))
            if pss_due and clock.now() >= 0.5 * run.duration:
                self.outcome.pss_run_mib, pss_due = measure_pss(self.nodes), False
            finished = {n for n, p in self.nodes.items() if p.exitcode is not None}
            for n in finished - set(self.outcome.exit_codes):
                self.outcome.exit_codes[n] = self.nodes[n].exitcode
                self.backend.forget(n)  # a node dead while holding its gate must not block it
                if n in self.outcome.killed:
                    log.info(
                        "node %d crashed at t=%.2f s, as scheduled", n, self.outcome.crashed[n][-1]
                    )
                elif self.nodes[n].exitcode != 0:
                    reason = getattr(self.nodes[n], "exit_reason", None)  # a Ray actor's
                    code = self.nodes[n].exitcode
                    self.outcome.errors.setdefault(n, reason or f"exited with code {code}")
                    self._departed(n)
            if len(finished) == len(self.nodes):
                self.outcome.training_wall_seconds = time.monotonic() - self.t0
                ended = sum(code == 0 for code in self.outcome.exit_codes.values())
                per_s = self.outcome.training_wall_seconds / run.duration if clock.virtual else None
                line = status(
                    self.outcome, ended, len(self.nodes), reach, run.duration, per_s, metric
                )
                display.finish(run.duration, line)
                return
            if hard_deadline is not None and time.monotonic() > hard_deadline:
                late = sorted(set(self.nodes) - finished)
                for n in late:
                    self.outcome.errors.setdefault(n, "did not finish before the deadline")
                log.error("nodes %s still running past the deadline: stopping them", late)
                return
            if self.keeper is not None:
                handle_stalls(self)
            t = min(run.duration, max(0.0, clock.now()))
            alive = len(self.nodes) - len(finished)
            per_s = (time.monotonic() - self.t0) / t if clock.virtual and t > 0 else None
            display.show(t, status(self.outcome, alive, len(self.nodes), reach, t, per_s, metric))

    def _departed(self, n: int) -> None:
        """`n` died unplanned: its peers and the keeper count on it no more."""
        died = max(0.0, self.clock.now())
        self.outcome.departed[n] = min(self.plan.run.duration, died)
        if self.keeper is not None:
            self.keeper.depart(n)
        tell(self.conns, control.Departed(n, self.outcome.departed[n]))
        log.error("node %d failed at t=%.2f s: %s", n, died, self._errors_text([n]))

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
            code = self.nodes[node].exitcode
            if code is None:
                self.nodes[node].kill()  # SIGKILL, or the actor killed
            if code in (None, 0):  # (in virtual time it may have ended on its own at t)
                self.outcome.killed.add(node)
                self.outcome.crashed.setdefault(node, []).append(t)
        if self.keeper is not None:
            return wait
        return max(0.0, min(wait, self.clock.wall_until(self.crashes.next_at())))


def run_plan(plan: Plan) -> Outcome:
    return Launch(plan).run()
