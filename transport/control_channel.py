"""The control channel between the launcher and its node and evaluator processes, over ZeroMQ so
that a process on another host is driven as a local one: one ROUTER at the launcher, one DEALER
per process named by its identity. Frames are opaque bytes (node.control encodes the messages);
each end offers what a multiprocessing Connection does (`send_bytes`, `poll`, `recv_bytes`)."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import zmq
import zmq.utils.monitor

from transport.security import (
    MONITORED,
    CurveKeys,
    launcher_router,
    refusals,
    secure_client,
)

QUEUE_SIZE = 1000  # messages either way per process: a run sends a few per second at most
SEND_TIMEOUT = 10.0  # wall seconds a full outbox may hold a sender before it is an error
LINGER_MS = 5000  # what is still queued at close (Done, Failed) gets this long to leave
# ZMTP heartbeats: a launcher whose host vanished (no FIN, no RST) is noticed as gone after this.
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 2000, 20000
POLL_MS = 1000  # the client's owner thread wakes at least this often to see its stop event


@dataclass(frozen=True)
class ControlAddress:
    """Where a process finds its launcher, and how it proves it belongs to the run."""

    endpoint: str  # tcp://HOST:PORT of the launcher's ROUTER
    name: str  # this process's identity: n<node> or e<worker>
    curve: CurveKeys | None = field(default=None, repr=False)


class ControlServer:
    """The launcher's end, owned by the launcher's main thread: `channel(name)` is the view of
    one process, `wait(channels, timeout)` those with a message. A frame from an identity no
    channel was opened for is dropped and counted (`unknown`); with CURVE, a peer without the
    run's keys never gets a frame in, and its handshake is counted (`refused`)."""

    def __init__(self, host: str = "127.0.0.1", curve: CurveKeys | None = None):
        # A send to a process that is not connected raises instead of vanishing; a process
        # started again under the same identity (a node joining after a crash) takes it over.
        self.ctx, self.authenticator, self.sock = launcher_router(curve)
        self.sock.router_handover = 1
        self.monitor = None
        if curve is not None:
            self.monitor = self.sock.get_monitor_socket(MONITORED)
        port = self.sock.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{port}"
        self.curve = curve
        self.inboxes: dict[bytes, deque[bytes]] = {}
        self.unknown = self.refused = 0

    def address(self, name: str) -> ControlAddress:
        return ControlAddress(self.endpoint, name, self.curve)

    def channel(self, name: str) -> Channel:
        """A fresh view of process `name`: what an earlier process of that name sent, and the
        launcher did not read, is gone (read off the socket first, then dropped)."""
        self.pump(0)
        self.inboxes[name.encode()] = deque()
        return Channel(self, name.encode())

    def pump(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for frames, then read every frame waiting."""
        self._count_refused()
        if not self.sock.poll(max(0, int(timeout * 1000))):
            return
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            inbox = self.inboxes.get(frames[0]) if len(frames) == 2 else None
            if inbox is None:
                self.unknown += 1
            else:
                inbox.append(frames[1])

    def wait(self, channels: list[Channel], timeout: float) -> list[Channel]:
        """Those of `channels` with a message, waiting up to `timeout` seconds for one."""
        deadline = time.monotonic() + timeout
        while True:
            ready = [c for c in channels if self.inboxes.get(c.identity)]
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0:
                return ready
            self.pump(remaining)

    def _count_refused(self) -> None:
        if self.monitor is not None:
            self.refused += refusals(self.monitor)

    def counts(self) -> dict:
        """For the summary: what the control socket turned away."""
        self._count_refused()
        return {"handshakes_refused": self.refused, "frames_from_strangers": self.unknown}

    def send(self, identity: bytes, data: bytes) -> None:
        try:
            self.sock.send_multipart([identity, data], zmq.NOBLOCK)
        except zmq.ZMQError as err:  # not connected (gone, or never came): as a closed pipe
            raise BrokenPipeError(f"{identity.decode()}: {err}") from err

    def close(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
        self.sock.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.ctx.term()


class Channel:
    """The launcher's view of one process, as a Connection: send, poll, receive."""

    def __init__(self, server: ControlServer, identity: bytes):
        self.server, self.identity = server, identity

    def send_bytes(self, data: bytes) -> None:
        self.server.send(self.identity, data)

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.server.wait([self], timeout))

    def recv_bytes(self) -> bytes:
        inbox = self.server.inboxes.get(self.identity)
        if not inbox:
            self.server.wait([self], 0)
        if not inbox:
            raise EOFError(f"{self.identity.decode()}: no message waiting")
        return inbox.popleft()

    def __repr__(self) -> str:
        return f"Channel({self.identity.decode()})"


class ControlClient:
    """A process's end. Its socket lives in an owner thread; `send_bytes` queues (and wakes that
    thread through a pipe, so a clock probe is answered at once) and `poll`/`recv_bytes` read
    what it received: safe from any thread. Once the launcher is gone (its connection dropped,
    or silent past the heartbeat timeout) both raise EOFError, as a closed pipe would."""

    def __init__(self, address: ControlAddress):
        self.address = address
        self.outbox: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_SIZE)
        self.inbox: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_SIZE)
        self.peeked: bytes | None = None
        self.lost = threading.Event()
        self.stop = threading.Event()
        self.wake_read, self.wake_write = os.pipe()
        self.connected = threading.Event()
        self.dropped = 0
        self.thread = threading.Thread(
            target=self._serve, name=f"control-{address.name}", daemon=True
        )
        self.thread.start()

    def send_bytes(self, data: bytes) -> None:
        if self.lost.is_set() or self.stop.is_set():
            raise BrokenPipeError(f"{self.address.name}: the launcher is gone")
        try:
            self.outbox.put(data, timeout=SEND_TIMEOUT)
        except queue.Full as err:
            raise BrokenPipeError(f"{self.address.name}: control outbox full") from err
        os.write(self.wake_write, b"!")

    def poll(self, timeout: float = 0.0) -> bool:
        if self.peeked is not None:
            return True
        try:
            self.peeked = self.inbox.get(timeout=max(0.0, timeout))
            return True
        except queue.Empty:
            if self.lost.is_set():
                raise EOFError(f"{self.address.name}: the launcher is gone") from None
            return False

    def recv_bytes(self) -> bytes:
        if self.peeked is None and not self.poll(0):
            raise EOFError(f"{self.address.name}: no message waiting")
        data, self.peeked = self.peeked, None
        return data

    def close(self) -> None:
        """Send what is queued (within the linger), then close the socket and the pipe."""
        if self.stop.is_set():
            return
        self.stop.set()
        os.write(self.wake_write, b"!")
        self.thread.join(timeout=LINGER_MS / 1000 + 5)
        if not self.thread.is_alive():  # else its poller still holds the pipe: leave it be
            os.close(self.wake_read)
            os.close(self.wake_write)

    def _serve(self) -> None:
        ctx = zmq.Context(io_threads=1)
        sock = ctx.socket(zmq.DEALER)
        sock.identity = self.address.name.encode()
        sock.linger = LINGER_MS
        sock.heartbeat_ivl, sock.heartbeat_timeout = HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS
        if self.address.curve is not None:
            secure_client(sock, self.address.curve)
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        sock.connect(self.address.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self.wake_read, zmq.POLLIN)
        try:
            while True:
                events = dict(poller.poll(POLL_MS))
                if self.wake_read in events:
                    os.read(self.wake_read, 4096)
                self._flush(sock)
                if self.stop.is_set():
                    return
                if monitor in events:
                    self._watch(monitor)
                while sock in events:
                    try:
                        data = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    try:
                        self.inbox.put(data, timeout=SEND_TIMEOUT)
                    except queue.Full:  # nobody reads: a stuck process, reported elsewhere
                        self.dropped += 1
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close()  # lingers: Done or Failed still leaves
            ctx.term()

    def _flush(self, sock: zmq.Socket) -> None:
        while True:
            try:
                data = self.outbox.get_nowait()
            except queue.Empty:
                return
            sock.send(data)  # the DEALER queues until connected (up to its high-water mark)

    def _watch(self, monitor: zmq.Socket) -> None:
        while True:
            try:
                event = zmq.utils.monitor.recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_CONNECTED:
                self.connected.set()
            elif event["event"] == zmq.EVENT_DISCONNECTED and self.connected.is_set():
                self.lost.set()  # the launcher closed or died: this process is on its own
