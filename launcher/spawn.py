"""Starts one OS process per node from a torch-preloaded forkserver, runs the barrier, monitors."""

from __future__ import annotations

import logging
import multiprocessing as mp
import shutil
import signal
import time

from launcher.backends import make_backend
from launcher.calibration import Calibrator
from launcher.clocks import synchronise
from launcher.outcome import Outcome, StartupError
from launcher.plan import Plan
from launcher.processes import CrashSchedule, measure_pss, reap, tell, write_pids
from launcher.progress import ProgressDisplay, status
from launcher.rejoin import Rejoins
from node import control
from node.files import write_json_atomic
from transport import Reachability
from transport.control_channel import Channel, ControlServer

log = logging.getLogger(__name__)

START_SLACK = 1.0  # wall seconds between the barrier and t0, for every PUSH socket to connect
DRAIN_TIMEOUT = 600.0  # wall seconds the evaluators may take after the nodes are done


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
            self.gates = backend.start_gates()
            self.peers = peers = self._barrier(started)
            for node, conn in list(self.conns.items()):  # each its own machine's gate
                self._broadcast(control.Peers(peers, self.gates[node]), {node: conn})
            self._collect(control.Connected, started)
            self.outcome.clocks = synchronise(self.conns, run.start_timeout)
            if run.tdf is None:
                self.outcome.tdf, self.outcome.calibration = Calibrator(
                    self, self.backend.hosts()
                )()
            else:
                self.outcome.tdf = run.tdf
            tdf = self.outcome.tdf
            log.info("time-dilation factor %.2f (%s)", tdf, "auto" if run.tdf is None else "fixed")
            t0 = time.monotonic() + START_SLACK
            self._broadcast(control.Start(t0, tdf))
            self._monitor(t0)
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
                self._stop_nodes()
                self._finish_evaluators()
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

    # ---- start -------------------------------------------------------------------------------
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
        got: dict = {}
        deadline = started + self.plan.run.start_timeout
        while len(got) < len(self.nodes):
            if time.monotonic() > deadline:
                missing = sorted(set(self.nodes) - set(got))
                raise StartupError(f"nodes {missing} sent no {kind.__name__} in time")
            for node, message in self._poll(0.2):
                if isinstance(message, kind):
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

    def _monitor(self, t0: float) -> None:
        display = ProgressDisplay(self.plan.run.duration, self.plan.run.progress_interval)
        try:
            with display.logging_through_bar():
                self._watch(t0, display)
        finally:
            display.close()

    def _watch(self, t0: float, display: ProgressDisplay) -> None:
        run, tdf = self.plan.run, self.outcome.tdf
        # Paced nodes end at t0 + duration * tdf; un-paced ones (benchmarks) when their steps do.
        hard_deadline = t0 + (run.duration * tdf + 60.0 + 10 * tdf if run.pace else 3600.0)
        # Reading smaps takes each node's mmap lock: sample memory once, mid-run, not repeatedly.
        pss_at = t0 + 0.5 * run.duration * tdf
        self.crashes, reach = CrashSchedule(run.scenario), Reachability(run.scenario)
        rejoins = Rejoins(self, run.scenario)
        while True:
            rejoins.step(t0, self._poll(self._crash_due(t0, 0.2)))
            if pss_at and time.monotonic() >= pss_at:
                self.outcome.pss_run_mib, pss_at = measure_pss(self.nodes), None
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
                    died = max(0.0, (time.monotonic() - t0) / tdf)
                    self.outcome.departed[n] = min(run.duration, died)
                    tell(self.conns, control.Departed(n, self.outcome.departed[n]))
                    log.error("node %d failed at t=%.1f s: %s", n, died, self._errors_text([n]))
            if len(finished) == len(self.nodes):
                self.outcome.training_wall_seconds = time.monotonic() - t0
                return
            if time.monotonic() > hard_deadline:
                late = sorted(set(self.nodes) - finished)
                for n in late:
                    self.outcome.errors.setdefault(n, "did not finish before the deadline")
                log.error("nodes %s still running past the deadline: stopping them", late)
                return
            t = min(run.duration, max(0.0, (time.monotonic() - t0) / tdf))
            alive = len(self.nodes) - len(finished)
            display.show(t, status(self.outcome, alive, len(self.nodes), reach, t))

    def _crash_due(self, t0: float, wait: float) -> float:
        """Kill hard (SIGKILL, no goodbye) every node whose scheduled crash has come; the wall
        seconds to wait for messages before the next one is due (at most `wait`)."""
        tdf = self.outcome.tdf
        for node in self.crashes.due((time.monotonic() - t0) / tdf):
            if self.nodes[node].exitcode is None:
                self.nodes[node].kill()  # SIGKILL, or the actor killed
                self.outcome.killed.add(node)
                self.outcome.crashed.setdefault(node, []).append((time.monotonic() - t0) / tdf)
        return max(0.0, min(wait, t0 + self.crashes.next_at() * tdf - time.monotonic()))

    # ---- stop --------------------------------------------------------------------------------
    def _stop_nodes(self) -> None:
        """Stop and SIGTERM (a node not reading its pipe takes it as Stop), SIGKILL at last."""
        grace = self.plan.run.stop_grace
        tell(self.conns, control.Stop())
        for p in [p for p in self.nodes.values() if p.is_alive()]:
            p.terminate()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.is_alive() for p in self.nodes.values()):
            self._poll(0.1)
        alive = [p for p in self.nodes.values() if p.is_alive()]
        for p in alive:
            p.kill()
        for p in alive:
            p.join(timeout=grace)
        self._poll(0)
        for n, p in self.nodes.items():
            p.join(timeout=1.0)
            self.outcome.exit_codes[n] = p.exitcode
            planned = n in self.outcome.killed
            if p.exitcode not in (0, None) and n not in self.outcome.errors and not planned:
                self.outcome.errors[n] = f"exited with code {p.exitcode}"
            p.close() if p.exitcode is not None else None

    def _finish_evaluators(self) -> None:
        """After a normal run the evaluators test every snapshot left; on Ctrl-C they just stop."""
        finish = not self.outcome.interrupted
        tell(self.eval_conns, control.Finish() if finish else control.Stop())
        deadline = time.monotonic() + (DRAIN_TIMEOUT if finish else self.plan.run.stop_grace)

        def pending() -> set[int]:
            return {
                w for w in set(self.evaluators) - self.eval_done if self.evaluators[w].is_alive()
            }

        while pending() and time.monotonic() < deadline:
            self._poll(0.2)
        self._poll(0)  # a worker may have said 'done' just before exiting
        self.outcome.evaluation_complete = finish and self.eval_done == set(self.evaluators)
        reap(self.evaluators.values(), self.plan.run.stop_grace)


def run_plan(plan: Plan) -> Outcome:
    return Launch(plan).run()
