"""Node process entry: pin threads, handshake with the launcher, run, always close."""

from __future__ import annotations

import gc
import os
import signal
import threading
import traceback
from multiprocessing.connection import Connection

from node import control

CONTROL_POLL = 0.1


def _watch_control(conn: Connection, stop: threading.Event) -> None:
    """The launcher's Stop (or a closed pipe) stops the node."""
    while not stop.is_set():
        try:
            message = control.receive(conn, CONTROL_POLL)
        except (EOFError, OSError, control.ControlError):
            stop.set()
            return
        if isinstance(message, control.Stop):
            stop.set()


def run_node(spec, conn: Connection, start_timeout: float = 300.0) -> None:
    """Target of every node process. Ctrl-C goes to the launcher, which stops nodes in order."""
    os.environ["OMP_NUM_THREADS"] = str(spec.threads)
    # torch is already loaded by the forkserver: these imports are cheap
    from node.algorithms import load_algorithm
    from node.runtime import Node
    from node.torch_setup import configure_torch
    from transport import EmulatedClock, ZmqTransport

    configure_torch(spec.threads, spec.model)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = None
    code = 0
    try:
        transport = ZmqTransport(
            spec.node_id,
            spec.link,
            load_algorithm(spec.algorithm_class).kinds,
            stop,
            bind_address=f"{spec.bind}:0",
            max_message_bytes=spec.max_message_bytes,
        )
        node = Node(spec, transport, stop)
        endpoint = node.setup()
        gc.collect()
        gc.freeze()  # model, data and sockets stay for the whole run: no need to scan them again
        control.send(conn, control.Ready(spec.node_id, endpoint))
        peers = control.expect(conn, control.Peers, start_timeout, spec.node_id)
        node.connect(peers.peers)
        control.send(conn, control.Connected(spec.node_id))
        next_step = (control.Calibrate, control.Start)
        message = control.expect(conn, next_step, start_timeout, spec.node_id)
        while isinstance(message, control.Calibrate):
            cpu, wall = node.calibrate(message.steps, message.period)
            control.send(conn, control.Calibrated(spec.node_id, cpu, wall))
            message = control.expect(conn, next_step, start_timeout, spec.node_id)
        node.start(EmulatedClock(message.t0, message.tdf))
        threading.Thread(target=_watch_control, args=(conn, stop), daemon=True).start()
        node.run(report=lambda progress: control.send(conn, progress))
        stop.set()
        report = node.final_report()
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
