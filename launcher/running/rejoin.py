"""Crashed nodes that a scenario brings back: a new process started shortly before its join
instant (once the old one is dead; in virtual time at once, the keeper holding the join instant
until it reports), listening where the old one did, let in on the run's clock without
calibration; it joins with the run's initial model or its last checkpoint."""

from __future__ import annotations

import dataclasses
import logging

from launcher.running.clocks import synchronise
from launcher.running.outcome import StartupError
from launcher.running.processes import write_pids
from node import control
from transport.dynamics import crash_rejoins

log = logging.getLogger(__name__)
# Wall seconds before its join instant a node's new process starts: it loads its shard and
# binds (about a second here) and must be past the handshake before it is due.
RESTART_LEAD = 5.0
PROBE_TIMEOUT = 5.0  # wall seconds for a new process to answer a clock probe


class Rejoins:
    """Carries a run's crash-and-join schedule out, one step per monitor tick: `step(messages)`
    starts what is due and moves each new process through Ready -> Peers -> Connected ->
    Start (the run's own clock: its t0 and factor, or the time keeper)."""

    def __init__(self, launch, scenario=()):
        self.launch = launch
        self.pending = [(a.t, a.node) for a in crash_rejoins(scenario)]
        self.waiting: dict[int, type] = {}  # node -> the message its new process owes

    def step(self, messages) -> None:
        launch, clock = self.launch, self.launch.clock
        for t, node in list(self.pending):
            due = clock.wall_until(t) <= RESTART_LEAD
            if due and launch.nodes[node].exitcode is not None:  # the old one is gone
                self.pending.remove((t, node))
                try:
                    self._start(node, t)
                except Exception as err:  # noqa: BLE001 (it is reported, the run goes on)
                    log.error("node %d cannot join again: %s", node, err)
                    self._give_up(node)
        for node, message in messages:
            if not isinstance(message, self.waiting.get(node, ())):
                continue
            conn = launch.conns[node]
            if isinstance(message, control.Ready):
                control.send(conn, control.Peers(launch.peers, launch.gates[node]))
                self.waiting[node] = control.Connected
            else:
                try:
                    start = self._start_message(node, conn)
                except StartupError as err:  # never started: it times out and is reported
                    log.error("node %d cannot join again: %s", node, err)
                    del self.waiting[node]
                    self._give_up(node)
                    continue
                control.send(conn, start)
                for dead, t in launch.outcome.departed.items():  # deaths it was not told of
                    control.send(conn, control.Departed(dead, t))
                del self.waiting[node]

    def _start_message(self, node: int, conn) -> control.Start:
        """The run's clock for a new process: the time keeper (its next incarnation), or the
        shared t0 and factor after probing its clock, as every node's at the start."""
        launch = self.launch
        keeper = launch.keeper
        if keeper is not None:
            incarnation = len(launch.outcome.rejoined[node])
            endpoint = keeper.address.endpoint
            t, gen = keeper.keeper.t, keeper.keeper.gen
            return control.Start(0.0, 1.0, endpoint, incarnation, t, gen)
        launch.outcome.clocks.update(synchronise({node: conn}, PROBE_TIMEOUT))
        return control.Start(launch.clock.t0, launch.clock.tdf)

    def _give_up(self, node: int) -> None:
        if self.launch.keeper is not None:
            self.launch.keeper.cancel_join(node)

    def _start(self, node: int, t: float) -> None:
        launch = self.launch
        launch.nodes[node].join(timeout=1.0)
        spec = dataclasses.replace(launch.plan.nodes[node], start_at=t, endpoint=launch.peers[node])
        launch.nodes[node], launch.conns[node] = launch.backend.start_node(spec, launch.control)
        launch.outcome.exit_codes.pop(node, None)  # its new process is watched as any other
        launch.outcome.killed.discard(node)
        launch.outcome.rejoined.setdefault(node, []).append(t)
        launch.outcome.pids = write_pids(launch.plan.run_dir, launch.nodes, launch.evaluators)
        self.waiting[node] = control.Ready
        log.info("node %d: a new process, to join at t=%.2f s", node, t)
