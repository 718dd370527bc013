"""Crashed nodes that a scenario brings back: a new process started shortly before its join
instant (once the old one is dead; in virtual time at once, the keeper holding the join instant
until it reports), listening where the old one did, let in on the run's clock without
calibration; it joins with the run's initial model or its last checkpoint."""

from __future__ import annotations

import logging

from launcher.running.outcome import StartupError
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
    Start (the run's own clock: its t0 and factor, or the time keeper). The launch (a
    spawn.Launch past its start) starts the processes and records them; this keeps only which
    joins are to come and what each new process owes."""

    def __init__(self, launch, scenario=()):
        self.launch = launch
        self.pending = [(a.t, a.node) for a in crash_rejoins(scenario)]
        self.waiting: dict[int, type] = {}  # node -> the message its new process owes

    def step(self, messages) -> None:
        launch, fleet = self.launch, self.launch.fleet
        for t, node in list(self.pending):
            due = launch.clock.wall_until(t) <= RESTART_LEAD
            if due and fleet.exitcode(node) is not None:  # the old one is gone
                self.pending.remove((t, node))
                try:
                    launch.restart(node, t)
                    self.waiting[node] = control.Ready
                    log.info("node %d: a new process, to join at t=%.2f s", node, t)
                except Exception as err:  # noqa: BLE001 (it is reported, the run goes on)
                    log.error("node %d cannot join again: %s", node, err)
                    self._give_up(node)
        for node, message in messages:
            if not isinstance(message, self.waiting.get(node, ())):
                continue
            if isinstance(message, control.Ready):
                fleet.send(node, launch.peers_message(node))
                self.waiting[node] = control.Connected
            else:
                try:
                    start = launch.start_message(node, PROBE_TIMEOUT)
                except StartupError as err:  # never started: it times out and is reported
                    log.error("node %d cannot join again: %s", node, err)
                    del self.waiting[node]
                    self._give_up(node)
                    continue
                fleet.send(node, start)
                for dead, t in launch.outcome.departed.items():  # deaths it was not told of
                    fleet.send(node, control.Departed(dead, t))
                del self.waiting[node]

    def _give_up(self, node: int) -> None:
        if self.launch.keeper is not None:
            self.launch.keeper.cancel_join(node)
