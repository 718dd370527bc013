"""The launcher's side of virtual time (`clock=virtual`): the thread that drives a pure
`TimeKeeper` (launcher/running/timekeeper.py) over the keeper's socket and is the run's
clock, and a run's start, record and watchdog in virtual time, as
launcher/running/calibration.py holds dilated wall time's start."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field

import zmq

from launcher.running.timekeeper import Advance, Crash, End, Stuck, Sync, TimeKeeper
from node import control
from node.algorithms import load_algorithm
from transport.clock.keeper_link import (
    LEAVE,
    KeeperSocket,
    LinkError,
    decode_report,
    encode_advance,
    encode_end,
    encode_sync,
)
from transport.dynamics import crash_rejoins
from transport.security import CurveKeys

log = logging.getLogger(__name__)
POLL_MS = 100  # the keeper's wake-up with nothing received: its watchdog and its inputs
BARE_STEPS = 64  # node 0's burst alone, the bare step the efficiency is judged by


@dataclass
class KeeperEvents:
    """What the keeper thread hands the launcher's main thread."""

    crashes: queue.Queue = field(default_factory=queue.Queue)  # Crash: kill that process
    stalls: queue.Queue = field(default_factory=queue.Queue)  # dict: what time waits on


class KeeperThread(threading.Thread):
    """Owns the keeper's socket and drives a `TimeKeeper`; the launcher's clock in virtual
    time (`now`, `wall_until` = 0: its instants come when everyone is done). A wait longer
    than `stall_timeout` wall seconds with nothing received is reported in `events.stalls`
    with what time waits on, once per such wait."""

    virtual = True

    def __init__(
        self,
        keeper: TimeKeeper,
        host: str = "127.0.0.1",
        curve: CurveKeys | None = None,
        stall_timeout: float = 120.0,
    ):
        super().__init__(name="time-keeper", daemon=True)
        self.keeper, self.host, self.curve = keeper, host, curve
        self.stall_timeout = stall_timeout
        self.events = KeeperEvents()
        self.address = None
        self.bound, self.stop, self.finished = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        self.error: BaseException | None = None
        self.inputs: queue.Queue = queue.Queue()
        self.wake_read, self.wake_write = os.pipe()
        self.strangers = 0
        self.cpu_s = 0.0  # this thread's CPU time

    # ---- the launcher's clock ---------------------------------------------------------------
    def now(self) -> float:
        return self.keeper.t

    def wall_until(self, t_emulated: float) -> float:
        return 0.0

    # ---- from the main thread ---------------------------------------------------------------
    def start_and_bind(self, timeout: float = 10.0):
        self.start()
        if not self.bound.wait(timeout) or self.address is None:
            raise RuntimeError(f"the time keeper did not bind: {self.error}")
        return self.address

    def depart(self, node: int) -> None:
        self._input("depart", node)

    def cancel_join(self, node: int) -> None:
        self._input("cancel_join", node)

    def _input(self, verb: str, node: int) -> None:
        self.inputs.put((verb, node))
        os.write(self.wake_write, b"!")

    def close(self) -> None:
        self.stop.set()
        os.write(self.wake_write, b"!")
        self.join(timeout=5.0)
        if not self.is_alive():
            os.close(self.wake_read)
            os.close(self.wake_write)

    # ---- the thread ---------------------------------------------------------------------------
    def run(self) -> None:
        sock = None
        try:
            sock = KeeperSocket(self.host, self.curve)
            self.address = sock.address
            self.bound.set()
            self._serve(sock)
        except BaseException as exc:  # reported by the launcher
            self.error = exc
            log.exception("the time keeper failed")
        finally:
            self.cpu_s = time.thread_time()
            if sock is not None:
                self.strangers = sock.strangers
                sock.close()
            self.bound.set()

    def _serve(self, sock: KeeperSocket) -> None:
        poller = zmq.Poller()
        poller.register(sock.sock, zmq.POLLIN)
        poller.register(self.wake_read, zmq.POLLIN)
        keeper, quiet_since, reported_stall = self.keeper, time.monotonic(), False
        while not self.stop.is_set():
            events = dict(poller.poll(POLL_MS))
            actions = []
            if self.wake_read in events:
                os.read(self.wake_read, 4096)
            while not self.inputs.empty():
                verb, node = self.inputs.get_nowait()
                actions += getattr(keeper, verb)(node)
            for node, incarnation, kind, frame in sock.receive():
                if kind == LEAVE:
                    actions += keeper.leave(node, incarnation)
                    continue
                try:
                    report = decode_report(frame)
                except LinkError:
                    sock.strangers += 1
                    continue
                actions += keeper.report(node, incarnation, report)
            if actions or events:
                quiet_since, reported_stall = time.monotonic(), False
            self._carry_out(sock, actions)
            if time.monotonic() - quiet_since > self.stall_timeout and not reported_stall:
                waiting = keeper.waiting_on()
                if waiting["busy"] or waiting["in_flight"] or waiting["joins"]:
                    self.events.stalls.put(waiting)
                    reported_stall = True

    def _carry_out(self, sock: KeeperSocket, actions: list) -> None:
        for action in actions:
            if isinstance(action, Advance):
                frame = encode_advance(action.gen, action.t, action.horizon, action.slot)
                sock.send(action.node, action.incarnation, frame)
            elif isinstance(action, Sync):
                sock.send(action.node, action.incarnation, encode_sync(action.admitted))
            elif isinstance(action, Crash):
                self.events.crashes.put(action)
            elif isinstance(action, End):
                for node, incarnation in action.followers:
                    sock.send(node, incarnation, encode_end())
            elif isinstance(action, Stuck):
                self.events.stalls.put({"waiting_for_ever": list(action.nodes)})
        if self.keeper.done:
            self.finished.set()


def time_keeper(plan, hosts, host: str) -> KeeperThread:
    """A run's time keeper, not started: every node of `plan` from emulated 0, the scenario's
    crashes and joins, each machine of `hosts` computing its cores' worth at once (the compute
    gate), its socket on `host`."""
    run = plan.run
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
        [spec.node_id for spec in plan.nodes],
        machine_of=hosts.machine_of,
        slots=slots,
        crashes=[(a.t, a.node) for a in run.scenario if a.kind == "crash"],
        joins=[(a.t, a.node) for a in crash_rejoins(run.scenario)],
    )
    curve = plan.nodes[0].curve if plan.nodes else None
    return KeeperThread(keeper, host, curve, run.stall_timeout)


def start_virtual(fleet, keeper: KeeperThread) -> float:
    """A run's start in virtual time (`fleet`: past its barrier and node 0's bare step): the
    keeper bound, and every node told to follow it from emulated 0; the wall instant t0."""
    address = keeper.start_and_bind()
    slots = keeper.keeper.slots
    log.info("virtual time: the launcher keeps the clock (%s per machine)", slots or "no gate")
    t0 = time.monotonic()
    fleet.broadcast(control.Start(0.0, 1.0, keeper=address.endpoint))
    return t0


def bare_step(fleet, started: float) -> dict | None:
    """A burst of local steps on node 0 alone, every other node idle: CPU and wall per
    step (the smaller of two bursts)."""
    if 0 not in fleet.connected():
        return None
    best = None
    for _ in range(2):
        fleet.broadcast(control.Calibrate(BARE_STEPS), [0])
        got = fleet.collect(control.Calibrated, started, [0])[0]
        if best is None or got.cpu_per_step < best.cpu_per_step:
            best = got
    return {"cpu_s": best.cpu_per_step, "wall_s": best.wall_per_step, "steps": BARE_STEPS}


def keeper_record(keeper: KeeperThread) -> dict:
    counts = keeper.keeper.counts
    return {
        "phases": counts.phases,
        "advances": counts.advances,
        "syncs": counts.syncs,
        "reports": counts.reports,
        "keeper_cpu_s": round(keeper.cpu_s, 3),
        "frames_from_strangers": keeper.strangers,
        "error": None if keeper.error is None else repr(keeper.error),
    }


def handle_stalls(keeper: KeeperThread, fleet, stall_timeout: float) -> dict[int, str]:
    """Virtual time stood still past the watchdog: name what it waits on and stop those
    nodes (the others go on); every live node waiting for ever ends the run. A keeper
    that failed ends it at once. Each node stopped, and why."""
    stopped: dict[int, str] = {}

    def stop(n: int, why: str) -> None:
        if fleet.exitcode(n) is None:
            stopped.setdefault(n, why)
            fleet.kill(n)

    if keeper.error is not None and not keeper.stop.is_set():
        keeper.stop.set()
        log.error("the time keeper failed: %r; stopping every node", keeper.error)
        for n in fleet.node_ids():
            stop(n, f"the time keeper failed: {keeper.error!r}")
    while not keeper.events.stalls.empty():
        waiting = keeper.events.stalls.get_nowait()
        if "waiting_for_ever" in waiting:
            nodes = waiting["waiting_for_ever"]
            why = "waits for ever: every live node did, so time could not move"
        else:
            nodes = sorted(set(waiting["busy"]) | set(waiting["in_flight"]))
            why = (
                f"did not go idle within {stall_timeout:g} wall seconds "
                f"(time stood at t={keeper.now():.4f} s; messages owed: "
                f"{waiting['in_flight']}; joins awaited: {waiting['joins']})"
            )
        log.error("virtual time stood still: nodes %s %s", nodes, why)
        for n in nodes:
            stop(n, f"node {n} {why}")
    return stopped
