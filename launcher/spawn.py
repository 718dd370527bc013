"""Starts one process per node (where the backend says), runs the barrier, starts the run's clock
(the launcher's virtual clock, or dilated wall time after calibration), monitors."""

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
from launcher.timekeeper import KeeperThread, TimeKeeper
from node import control
from node.algorithms import load_algorithm
from node.files import write_json_atomic
from transport import DilatedClock, Reachability
from transport.control_channel import Channel, ControlServer
from transport.dynamics import crash_rejoins

log = logging.getLogger(__name__)

START_SLACK = 1.0  # wall seconds between the barrier and t0, for every PUSH socket to connect
DRAIN_TIMEOUT = 600.0  # wall seconds the evaluators may take after the nodes are done
BARE_STEPS = 64  # virtual time: node 0's burst alone, the bare step the efficiency is judged by


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
                self._stop_nodes()
                if self.keeper is not None:
                    self.keeper.close()
                    self.outcome.keeper = self._keeper_record()
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
    def _start_dilated(self) -> None:
        """Dilated wall time: clock offsets, the factor (calibrated or given), a shared t0."""
        run = self.plan.run
        self.outcome.clocks = synchronise(self.conns, run.start_timeout)
        if run.tdf is None:
            self.outcome.tdf, self.outcome.calibration = Calibrator(self, self.backend.hosts())()
        else:
            self.outcome.tdf = run.tdf
        tdf = self.outcome.tdf
        log.info("time-dilation factor %.2f (%s)", tdf, "auto" if run.tdf is None else "fixed")
        self.t0 = time.monotonic() + START_SLACK
        self.clock = DilatedClock(self.t0, tdf)
        self._broadcast(control.Start(self.t0, tdf))

    def _start_virtual(self, started: float) -> None:
        """Virtual time: node 0 times a bare burst alone (what the efficiency is judged by),
        then the time keeper starts and every node follows it from emulated 0."""
        run, hosts = self.plan.run, self.backend.hosts()
        self.outcome.calibration = {"mode": "virtual"}
        self.outcome.bare_step = self._bare_step(started)
        slots = None
        if run.gate_slots > 0:
            # auto: a core each for nodes computing rounds at once; per-step nodes compute one
            # step per wake and then wait for the keeper: twice as many hide that wait
            per_step = load_algorithm(run.algorithm_class).merges_at != "round"
            share = 2 if per_step or run.pacing == "step" else 1
            slots = {
                machine: share * cores if run.gate_slots_auto else run.gate_slots
                for machine, cores in hosts.cores.items()
            }
        keeper = TimeKeeper(
            [spec.node_id for spec in self.plan.nodes],
            machine_of=hosts.machine_of,
            slots=slots,
            crashes=[(a.t, a.node) for a in run.scenario if a.kind == "crash"],
            joins=[(a.t, a.node) for a in crash_rejoins(run.scenario)],
        )
        curve = self.plan.nodes[0].curve if self.plan.nodes else None
        self.keeper = KeeperThread(keeper, self.backend.control_host(), curve, run.stall_timeout)
        address = self.keeper.start_and_bind()
        self.clock = self.keeper
        log.info("virtual time: the launcher keeps the clock (%s per machine)", slots or "no gate")
        self.t0 = time.monotonic()
        self._broadcast(control.Start(0.0, 1.0, keeper=address.endpoint))

    def _bare_step(self, started: float) -> dict | None:
        """A burst of local steps on node 0 alone, every other node idle: CPU and wall per
        step (the smaller of two bursts)."""
        if 0 not in self.conns:
            return None
        best = None
        for _ in range(2):
            self._broadcast(control.Calibrate(BARE_STEPS), {0: self.conns[0]})
            got = self._collect_from(control.Calibrated, started, [0])[0]
            if best is None or got.cpu_per_step < best.cpu_per_step:
                best = got
        return {"cpu_s": best.cpu_per_step, "wall_s": best.wall_per_step, "steps": BARE_STEPS}

    def _keeper_record(self) -> dict:
        counts = self.keeper.keeper.counts
        return {
            "phases": counts.phases,
            "advances": counts.advances,
            "syncs": counts.syncs,
            "reports": counts.reports,
            "keeper_cpu_s": round(self.keeper.cpu_s, 3),
            "frames_from_strangers": self.keeper.strangers,
            "error": None if self.keeper.error is None else repr(self.keeper.error),
        }

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
                line = status(self.outcome, ended, len(self.nodes), reach, run.duration, per_s)
                display.finish(run.duration, line)
                return
            if hard_deadline is not None and time.monotonic() > hard_deadline:
                late = sorted(set(self.nodes) - finished)
                for n in late:
                    self.outcome.errors.setdefault(n, "did not finish before the deadline")
                log.error("nodes %s still running past the deadline: stopping them", late)
                return
            if self.keeper is not None:
                self._stalled()
            t = min(run.duration, max(0.0, clock.now()))
            alive = len(self.nodes) - len(finished)
            per_s = (time.monotonic() - self.t0) / t if clock.virtual and t > 0 else None
            display.show(t, status(self.outcome, alive, len(self.nodes), reach, t, per_s))

    def _departed(self, n: int) -> None:
        """`n` died unplanned: its peers and the keeper count on it no more."""
        died = max(0.0, self.clock.now())
        self.outcome.departed[n] = min(self.plan.run.duration, died)
        if self.keeper is not None:
            self.keeper.depart(n)
        tell(self.conns, control.Departed(n, self.outcome.departed[n]))
        log.error("node %d failed at t=%.2f s: %s", n, died, self._errors_text([n]))

    def _stalled(self) -> None:
        """Virtual time stood still past the watchdog: name what it waits on and stop those
        nodes (the others go on); every live node waiting for ever ends the run. A keeper
        that failed ends it at once."""
        if self.keeper.error is not None and not self.keeper.stop.is_set():
            self.keeper.stop.set()
            log.error("the time keeper failed: %r; stopping every node", self.keeper.error)
            for n, proc in self.nodes.items():
                if proc.exitcode is None:
                    self.outcome.errors.setdefault(
                        n, f"the time keeper failed: {self.keeper.error!r}"
                    )
                    proc.kill()
        while not self.keeper.events.stalls.empty():
            waiting = self.keeper.events.stalls.get_nowait()
            if "waiting_for_ever" in waiting:
                nodes = waiting["waiting_for_ever"]
                why = "waits for ever: every live node did, so time could not move"
            else:
                nodes = sorted(set(waiting["busy"]) | set(waiting["in_flight"]))
                why = (
                    f"did not go idle within {self.plan.run.stall_timeout:g} wall seconds "
                    f"(time stood at t={self.clock.now():.4f} s; messages owed: "
                    f"{waiting['in_flight']}; joins awaited: {waiting['joins']})"
                )
            log.error("virtual time stood still: nodes %s %s", nodes, why)
            for n in nodes:
                if self.nodes[n].exitcode is None:
                    self.outcome.errors.setdefault(n, f"node {n} {why}")
                    self.nodes[n].kill()

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
