"""Node process entry: pin threads, handshake with the launcher, run, always close."""

from __future__ import annotations

import gc
import os
import signal
import threading
import traceback
from multiprocessing.connection import Connection

import msgpack

CONTROL_POLL = 0.1


def send(conn: Connection, message: dict) -> None:
    conn.send_bytes(msgpack.packb(message, use_bin_type=True))


def receive(conn: Connection, timeout: float) -> dict | None:
    if not conn.poll(timeout):
        return None
    return msgpack.unpackb(conn.recv_bytes(), raw=False, strict_map_key=False)


def expect(conn: Connection, kinds: str | tuple[str, ...], timeout: float, node_id: int) -> dict:
    """The launcher's next step of the start-up handshake, or a clear error."""
    message = receive(conn, timeout)
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    if not message or message.get("type") not in kinds:
        raise RuntimeError(f"node {node_id}: expected {kinds} from the launcher, got {message}")
    return message


def _watch_control(conn: Connection, stop: threading.Event) -> None:
    """The launcher's 'stop' (or a closed pipe) stops the node."""
    while not stop.is_set():
        try:
            message = receive(conn, CONTROL_POLL)
        except (EOFError, OSError):
            stop.set()
            return
        if message and message.get("type") == "stop":
            stop.set()


def run_node(spec, conn: Connection, start_timeout: float = 300.0) -> None:
    """Target of every node process. Ctrl-C goes to the launcher, which stops nodes in order."""
    os.environ["OMP_NUM_THREADS"] = str(spec.threads)
    from node.runtime import Node  # torch is already loaded by the forkserver: this is cheap
    from node.torch_setup import configure_torch

    configure_torch(spec.threads, spec.model)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = Node(spec, stop)
    code = 0
    try:
        endpoint = node.setup()
        gc.collect()
        gc.freeze()  # model, data and sockets stay for the whole run: no need to scan them again
        send(conn, {"type": "ready", "node": spec.node_id, "endpoint": endpoint})
        message = expect(conn, "peers", start_timeout, spec.node_id)
        node.connect({int(k): v for k, v in message["peers"].items()})
        send(conn, {"type": "connected", "node": spec.node_id})
        message = expect(conn, ("calibrate", "start"), start_timeout, spec.node_id)
        while message["type"] == "calibrate":
            cpu, wall = node.calibrate(message["steps"], message["period"])
            reply = {"cpu_per_step": cpu, "wall_per_step": wall}
            send(conn, {"type": "calibrated", "node": spec.node_id, **reply})
            message = expect(conn, ("calibrate", "start"), start_timeout, spec.node_id)
        node.start(message["t0"], message["tdf"])
        threading.Thread(target=_watch_control, args=(conn, stop), daemon=True).start()
        node.run(report=lambda message: send(conn, message))
        stop.set()
        report = node.final_report()
        send(conn, report)
        if report["thread_errors"]:
            raise RuntimeError(f"node {spec.node_id}: {report['thread_errors']}")
    except BaseException:
        code = 1
        stop.set()
        try:
            send(conn, {"type": "error", "node": spec.node_id, "error": traceback.format_exc()})
        except (OSError, ValueError):
            pass
    finally:
        node.close()
    if code:
        raise SystemExit(code)
