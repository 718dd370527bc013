"""Node process entry: pin threads, handshake with the launcher, run, always close."""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import itertools
import os
import signal
import threading
import time
import traceback

from node import control
from node.control import Connection
from transport.control_channel import ControlAddress, ControlClient

CONTROL_POLL = 1.0  # a message wakes the watcher at once; this only bounds noticing the end


def _watch_control(conn: Connection, stop: threading.Event, node) -> None:
    """The launcher's Stop (or its loss) stops the node; a death it announces leaves
    this node's views, and its transport waits for that peer no more."""
    while not stop.is_set():
        try:
            message = control.receive(conn, CONTROL_POLL)
        except (EOFError, OSError, control.ControlError):
            stop.set()
            return
        if isinstance(message, control.Stop):
            stop.set()
        elif isinstance(message, control.Departed):
            node.depart(message.node, message.t)


def _return_freed_memory() -> None:
    """glibc keeps what a closed transport freed (in its threads' arenas) for reuse, and a
    trial's transport is never reused: hand those pages back, or the trials add to every
    node's memory (seen here at 500 nodes: 26 MiB per node during the trials, 21 without)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        pass


def calibrate(node, conn: Connection, make_transport, timeout: float) -> control.Start:
    """Answer the launcher's clock probes and calibration requests until it says Start; each
    trial runs on a transport of its own, closed before the next one and before the run.
    Every t0 is moved onto this node's clock by the offset the launcher measured."""
    from node import calibration
    from transport import DilatedClock

    steps = (control.Calibrate, control.TrialPrepare, control.TrialStart, control.Start)
    clocks = (control.ClockProbe, control.ClockOffset)
    node_id, trial_transport, offset = node.spec.node_id, None, 0.0
    try:
        while True:
            message = control.expect(conn, steps + clocks, timeout, node_id)
            if isinstance(message, control.Start):  # its t0 on this node's clock
                return dataclasses.replace(message, t0=message.t0 + offset)
            if isinstance(message, control.ClockProbe):
                control.send(conn, control.ClockReply(node_id, message.seq, time.monotonic()))
            elif isinstance(message, control.ClockOffset):
                offset = message.offset
            elif isinstance(message, control.Calibrate):
                cpu, wall = calibration.burst(node, message.steps)
                control.send(conn, control.Calibrated(node_id, cpu, wall))
            elif isinstance(message, control.TrialPrepare):
                if trial_transport is not None:
                    trial_transport.close()
                    _return_freed_memory()
                trial_transport = make_transport()
                control.send(conn, control.TrialReady(node_id, trial_transport.bind()))
            else:
                clock = DilatedClock(message.t0 + offset, message.tdf)
                peers, rounds = message.peers, message.rounds
                stats = calibration.trial(node, trial_transport, peers, clock, rounds)
                control.send(conn, control.TrialDone(node_id, stats))
    finally:
        if trial_transport is not None:
            trial_transport.close()
            _return_freed_memory()


def run_clock(start: control.Start, spec):
    """The run's clock as `start` describes it: the launcher's virtual clock (this thread owns
    its end) or dilated wall time."""
    from transport import DilatedClock, FollowerClock, KeeperAddress

    if start.keeper is None:
        return DilatedClock(start.t0, start.tdf)
    address = KeeperAddress(start.keeper, spec.curve)
    clock = FollowerClock(address, spec.node_id, start.incarnation, start.t, start.gen)
    clock.open()
    return clock


def run_node(spec, address: ControlAddress, start_timeout: float = 300.0) -> None:
    """Target of every node process. Ctrl-C goes to the launcher, which stops nodes in order."""
    conn = ControlClient(address)
    try:
        _run_node(spec, conn, start_timeout)
    finally:
        conn.close()  # after Done or Failed has left


def _run_node(spec, conn: Connection, start_timeout: float) -> None:
    os.environ["OMP_NUM_THREADS"] = str(spec.threads)
    # torch is already loaded by the forkserver: these imports are cheap
    from node.algorithms import load_algorithm
    from node.runtime import Node
    from node.torch_setup import configure_torch
    from transport import GateClient, Reachability, VirtualZmqTransport, ZmqTransport

    configure_torch(spec.threads, spec.model)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = None
    code = 0
    try:
        kinds, made = load_algorithm(spec.algorithm_class).kinds, itertools.count()

        def make_transport(stopped: threading.Event, reach=None, cls=ZmqTransport):
            # tcp: any free port; ipc: a socket file of its own in the run's folder; a node
            # joining again after a crash: where its peers still send (its old address)
            n = next(made)
            where = (
                f"{spec.bind}:0"
                if spec.bind.startswith("tcp")
                else f"{spec.bind}/{spec.node_id}-{n}"
            )
            if n == 0 and spec.endpoint:
                where = spec.endpoint
            return cls(
                spec.node_id,
                spec.link,
                kinds,
                stopped,
                bind_address=where,
                max_message_bytes=spec.max_message_bytes,
                max_connections=spec.max_connections,
                reach=reach,
                curve=spec.curve,
            )

        # The run's transport follows the scenario; calibration trials run without one. In
        # virtual time it has no threads: this one owns its sockets.
        run_transport = VirtualZmqTransport if spec.clock == "virtual" else ZmqTransport
        transport = make_transport(stop, Reachability(spec.scenario), run_transport)
        node = Node(spec, transport, stop)
        endpoint = node.setup()
        gc.collect()
        gc.freeze()  # model, data and sockets stay for the whole run: no need to scan them again
        control.send(conn, control.Ready(spec.node_id, endpoint))
        peers = control.expect(conn, control.Peers, start_timeout, spec.node_id)
        if peers.gate is not None:
            node.use_gate(GateClient(spec.node_id, peers.gate, stop))
        node.connect(peers.peers)
        control.send(conn, control.Connected(spec.node_id))
        message = calibrate(node, conn, lambda: make_transport(threading.Event()), start_timeout)
        clock = run_clock(message, spec)
        node.start(clock)
        watch = (conn, stop, node)
        threading.Thread(target=_watch_control, args=watch, daemon=True).start()
        node.run(report=lambda progress: control.send(conn, progress))
        if clock.virtual:  # the keeper waits for this node no more; it tells when all are done
            clock.leave(stop)
        stop.set()
        report = control.Done(
            node=spec.node_id,
            stats={**node.counters, "gate_wait_s": node.gate.waited, **transport.stats.totals()},
            links=transport.stats.per_peer(),
            thread_errors=transport.errors(),
        )
        control.send(conn, report)
        if report.thread_errors:
            raise RuntimeError(f"node {spec.node_id}: {report.thread_errors}")
    except BaseException:
        code = 1
        stop.set()
        try:
            control.send(conn, control.Failed(spec.node_id, traceback.format_exc()))
        except (OSError, ValueError):
            pass
    finally:
        if node is not None:
            node.close()
    if code:
        raise SystemExit(code)
