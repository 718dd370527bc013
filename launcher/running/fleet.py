"""A run's node and evaluator processes and their control channels: started, spoken to, stopped."""

from __future__ import annotations

import time
from collections.abc import Callable

from launcher.running.clocks import synchronise
from launcher.running.outcome import StartupError
from launcher.running.processes import measure_pss, reap, tell
from node import control
from transport.control_channel import ControlServer

DRAIN_TIMEOUT = 600.0  # wall seconds the evaluators may take after the nodes are done


class Fleet:
    """The processes the backend started (each a handle with exitcode, is_alive, kill, join)
    and the launcher's channel to each; the only owner of both. Every message received is
    handed to `listener(sender, message)` first (sender: the node, or -1 - w for evaluator w):
    the launch records what it needs from there. Evaluators' results go to the backend."""

    def __init__(self, listener: Callable[[int, object], None], start_timeout: float):
        self.listener, self.start_timeout = listener, start_timeout
        self._backend = None
        self._control: ControlServer | None = None
        self._nodes: dict = {}
        self._conns: dict = {}
        self._evaluators: dict = {}
        self._eval_conns: dict = {}
        self._eval_done: set[int] = set()
        self._failures: dict[int, str] = {}  # each node's last Failed report: why it died

    def start(self, backend, control_server: ControlServer) -> None:
        """The evaluators, then one process per node, where `backend` says; each speaks to
        `control_server`. What started is kept even if the rest fails."""
        self._backend, self._control = backend, control_server
        for w, (proc, conn) in backend.start_evaluators(control_server).items():
            self._evaluators[w], self._eval_conns[w] = proc, conn
        for n, (proc, conn) in backend.start_nodes(control_server).items():
            self._nodes[n], self._conns[n] = proc, conn

    # ---- the start-up ------------------------------------------------------------------------
    def broadcast(self, message, nodes: list[int] | None = None) -> None:
        """Start-up messages to every connected node (or to `nodes`); a node whose channel is
        gone fails the start cleanly."""
        targets = self._conns if nodes is None else {n: self._conns[n] for n in nodes}
        for node, conn in list(targets.items()):
            try:
                control.send(conn, message)
            except (OSError, ValueError) as err:  # killed between two start-up steps
                raise StartupError(
                    f"node {node} is gone before the start ({type(err).__name__})"
                ) from err

    def collect(self, kind: type, started: float, nodes: list[int] | None = None) -> dict:
        """One `kind` message from every node (or from `nodes`) within the start timeout
        counted from `started`; a death fails fast."""
        nodes = list(self._nodes) if nodes is None else nodes
        got: dict = {}
        deadline = started + self.start_timeout
        while len(got) < len(nodes):
            if time.monotonic() > deadline:
                missing = sorted(set(nodes) - set(got))
                raise StartupError(f"nodes {missing} sent no {kind.__name__} in time")
            for node, message in self.poll(0.2):
                if isinstance(message, kind) and node in nodes:
                    got[node] = message
            dead = [n for n, p in self._nodes.items() if p.exitcode is not None]
            if dead:
                why = "; ".join(
                    self._failures.get(n, "no report").strip().splitlines()[-1] for n in dead
                )
                raise StartupError(f"nodes {dead} died before the start: {why}")
        return got

    def synchronise(self, timeout: float, nodes: list[int] | None = None) -> dict:
        """Each connected node's (or each of `nodes`') clock against the launcher's (a
        ClockEstimate by node), each told its offset (launcher.running.clocks)."""
        conns = self._conns if nodes is None else {n: self._conns[n] for n in nodes}
        return synchronise(conns, timeout)

    def connected(self) -> list[int]:
        """The nodes whose channel is still open."""
        return list(self._conns)

    # ---- the run -----------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[tuple[int, object]]:
        """The messages from nodes and evaluators within `timeout` wall seconds, as (sender,
        message); a channel that breaks is dropped."""
        if self._control is None:  # the start failed before the channel was open
            return []
        by_conn = {conn: ("node", n) for n, conn in self._conns.items()}
        by_conn.update({conn: ("eval", w) for w, conn in self._eval_conns.items()})
        messages = []
        for conn in self._control.wait(list(by_conn), timeout):
            role, ident = by_conn[conn]
            try:
                message = control.receive(conn, 0)
            except (EOFError, OSError, control.ControlError):
                (self._conns if role == "node" else self._eval_conns).pop(ident, None)
                continue
            if message is None:
                continue
            sender = ident if role == "node" else -1 - ident
            self.listener(sender, message)
            if role == "eval":
                if isinstance(message, control.Evaluated):
                    self._backend.record_evaluation(ident, message.record())
                elif isinstance(message, control.EvaluatorDone):
                    self._eval_done.add(ident)
            elif isinstance(message, control.Failed):
                self._failures[ident] = message.error
            messages.append((sender, message))
        return messages

    def send(self, node: int, message) -> None:
        """`message` to `node` (a broken channel raises)."""
        control.send(self._conns[node], message)

    def tell(self, message) -> None:
        """`message` to every node still connected (a dead one's channel is not an error)."""
        tell(self._conns, message)

    def node_ids(self) -> list[int]:
        return list(self._nodes)

    def exitcode(self, node: int) -> int | None:
        """`node`'s process's exit code (None while it runs)."""
        return self._nodes[node].exitcode

    def exit_reason(self, node: int) -> str | None:
        """How `node` ended when that was not its own doing, if its backend says (Ray's)."""
        return getattr(self._nodes[node], "exit_reason", None)

    def finished(self) -> set[int]:
        """The nodes whose process has exited."""
        return {n for n, p in self._nodes.items() if p.exitcode is not None}

    def kill(self, node: int) -> None:
        """SIGKILL, or the actor killed: no goodbye."""
        self._nodes[node].kill()

    def replace(self, node: int, spec) -> None:
        """`node`'s dead process reaped and a new one started from `spec` (a rejoin); what
        the old one sent and was not read is dropped."""
        self._nodes[node].join(timeout=1.0)
        self._nodes[node], self._conns[node] = self._backend.start_node(spec, self._control)

    def pids(self) -> dict:
        """Which OS process is which node and evaluator."""
        return {
            "nodes": {str(n): p.pid for n, p in self._nodes.items()},
            "evaluators": {str(w): p.pid for w, p in self._evaluators.items()},
        }

    def memory(self) -> dict[int, float]:
        """Each node's proportional set size, MiB."""
        return measure_pss(self._nodes)

    # ---- the end -----------------------------------------------------------------------------
    def stop(self, grace: float) -> dict[int, int | None]:
        """Stop and SIGTERM (a node not reading its pipe takes it as Stop), SIGKILL at last;
        each node's exit code."""
        nodes = self._nodes
        tell(self._conns, control.Stop())
        for p in [p for p in nodes.values() if p.is_alive()]:
            p.terminate()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.is_alive() for p in nodes.values()):
            self.poll(0.1)
        alive = [p for p in nodes.values() if p.is_alive()]
        for p in alive:
            p.kill()
        for p in alive:
            p.join(timeout=grace)
        self.poll(0)
        codes = {}
        for n, p in nodes.items():
            p.join(timeout=1.0)
            codes[n] = p.exitcode
            if p.exitcode is not None:
                p.close()
        return codes

    def finish_evaluators(self, finish: bool, grace: float) -> bool:
        """With `finish` (a normal run) the evaluators test every snapshot left, else they just
        stop (within `grace`); whether every evaluator said it was done."""
        tell(self._eval_conns, control.Finish() if finish else control.Stop())
        deadline = time.monotonic() + (DRAIN_TIMEOUT if finish else grace)

        def pending() -> set[int]:
            evaluators = self._evaluators
            return {w for w in set(evaluators) - self._eval_done if evaluators[w].is_alive()}

        while pending() and time.monotonic() < deadline:
            self.poll(0.2)
        self.poll(0)  # a worker may have said 'done' just before exiting
        complete = finish and self._eval_done == set(self._evaluators)
        reap(self._evaluators.values(), grace)
        return complete

    def close(self) -> dict | None:
        """The control channel closed; what its socket turned away (None: it never opened)."""
        if self._control is None:
            return None
        counts = self._control.counts()
        self._control.close()
        return counts
