"""A host-wide compute gate: at most `slots` node processes compute at once, granted earliest
emulated deadline first, so that those computing keep their caches warm and the one closest to
its deadline goes first. A pure queue, a server thread (in the launcher) and a client per node."""

from __future__ import annotations

import heapq
import itertools
import queue
import struct
import threading
import time
from typing import Protocol

import zmq

POLL_MS = 100  # the server's wake-up to notice `forget` and `stop`
WAIT_S = 1.0  # a waiting client's: the grant itself wakes it at once
_DEADLINE = struct.Struct(">d")


class Gate(Protocol):
    """What a node's training thread uses: hold the gate for one burst of computation.
    `waited` is the wall time spent waiting for it so far."""

    waited: float

    def acquire(self, deadline: float) -> None: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class NoGate:
    """Every node computes whenever it likes (tests, and runs without a gate)."""

    waited = 0.0

    def acquire(self, deadline: float) -> None:
        pass

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class GateQueue:
    """Who holds the gate and who waits, in order of emulated deadline (then of request).
    Each call returns the clients granted by it. A client asks again only after releasing."""

    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots = slots
        self.holders: set[str] = set()
        self.waiting: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    def request(self, client: str, deadline: float) -> list[str]:
        if client in self.holders or any(c == client for *_, c in self.waiting):
            return []  # a repeated request (the client restarted its burst): one place only
        heapq.heappush(self.waiting, (deadline, next(self._seq), client))
        return self._grant()

    def release(self, client: str) -> list[str]:
        self.holders.discard(client)
        return self._grant()

    def forget(self, client: str) -> list[str]:
        """`client` is gone (its process died): its slot and its place in line are freed."""
        self.waiting = [w for w in self.waiting if w[2] != client]
        heapq.heapify(self.waiting)
        return self.release(client)

    def _grant(self) -> list[str]:
        granted = []
        while self.waiting and len(self.holders) < self.slots:
            client = heapq.heappop(self.waiting)[2]
            self.holders.add(client)
            granted.append(client)
        return granted


class GateServer(threading.Thread):
    """Owns a ROUTER socket; clients send [b"A", deadline] to ask and [b"R"] to release, and
    get [b"G"] when granted. `forget(node)` (from any thread) frees a dead node's slot."""

    def __init__(self, slots: int, bind: str = "tcp://127.0.0.1"):
        super().__init__(name="compute-gate", daemon=True)
        self.queue = GateQueue(slots)
        self.bind_address = bind
        self.endpoint: str | None = None
        self.bound = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.grants = 0
        self._forget: queue.Queue[str] = queue.Queue()

    def forget(self, node: int) -> None:
        self._forget.put(str(node))

    def start_and_bind(self, timeout: float = 10.0) -> str:
        self.start()
        if not self.bound.wait(timeout) or self.endpoint is None:
            raise RuntimeError(f"the compute gate did not bind: {self.error}")
        return self.endpoint

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=5.0)

    def run(self) -> None:
        ctx = zmq.Context(io_threads=1)
        sock = ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            port = sock.bind_to_random_port(self.bind_address)
            self.endpoint = f"{self.bind_address}:{port}"
            self.bound.set()
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            while not self.stop.is_set():
                if poller.poll(POLL_MS):
                    self._serve(sock)
                while not self._forget.empty():
                    self._grant(sock, self.queue.forget(self._forget.get_nowait()))
        except BaseException as exc:
            self.error = exc
        finally:
            sock.close(linger=0)
            ctx.term()

    def _serve(self, sock: zmq.Socket) -> None:
        while True:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 2:
                continue
            client, verb = frames[0].decode(), frames[1]
            if verb == b"A" and len(frames) == 3 and len(frames[2]) == _DEADLINE.size:
                self._grant(sock, self.queue.request(client, _DEADLINE.unpack(frames[2])[0]))
            elif verb == b"R":
                self._grant(sock, self.queue.release(client))

    def _grant(self, sock: zmq.Socket, clients: list[str]) -> None:
        for client in clients:
            self.grants += 1
            sock.send_multipart([client.encode(), b"G"])


class GateClient:
    """One node's end of the gate, owned by its training thread (create, use and close it
    there). `acquire` blocks until granted or until `stop`; it returns the wall seconds it
    waited."""

    def __init__(self, node: int, endpoint: str, stop: threading.Event):
        self.stop = stop
        self.ctx = zmq.Context(io_threads=1)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, str(node).encode())
        self.sock.connect(endpoint)
        self.waited = 0.0
        self.held = False

    def acquire(self, deadline: float) -> None:
        start = time.perf_counter()
        self.sock.send_multipart([b"A", _DEADLINE.pack(deadline)])
        while not self.stop.is_set():
            if self.sock.poll(WAIT_S * 1000) and self.sock.recv_multipart() == [b"G"]:
                self.held = True
                break
        self.waited += time.perf_counter() - start

    def release(self) -> None:
        if self.held:
            self.sock.send_multipart([b"R"])
            self.held = False

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()
