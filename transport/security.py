"""CURVE on a node's data sockets: one key pair per run, made by the launcher and handed to every
node; a peer that does not hold it can neither connect to a node nor put a message into it (its
handshake is refused, and counted by the receiving node)."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field

import zmq
import zmq.auth.thread
from zmq.utils.monitor import recv_monitor_message

# The ZAP domain of every node's inbound socket: the authenticator answers for it alone.
DOMAIN = "dlemu"
# What a refused peer shows on the inbound socket's monitor: a wrong mechanism or server key
# (protocol), a client key the authenticator refused (auth), or, when a keyless client saw the
# mechanism mismatch first and hung up, a handshake cut short (no detail). That last one came
# in about a third of the attempts of a keyless peer, which does not retry after it.
REFUSED = {
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
}
MONITORED = functools.reduce(operator.or_, REFUSED)  # the monitor's event mask: those alone
LOOPBACK_HOSTS = ("127.", "localhost", "[::1]")


@dataclass(frozen=True)
class CurveKeys:
    """The run's key pair, Z85 text. Every node is a CURVE server with it and connects to its
    peers as a client with it; the authenticator admits only this public key, so holding the
    secret is what lets a socket in. The secret never appears in a repr or a log line."""

    public: str
    secret: str = field(repr=False)

    @classmethod
    def generate(cls) -> CurveKeys:
        public, secret = zmq.curve_keypair()
        return cls(public.decode("ascii"), secret.decode("ascii"))


def binds_off_loopback(bind: str) -> bool:
    """Whether a node bound at `bind` (tcp://HOST or ipc://...) is reachable from other hosts."""
    if not bind.startswith("tcp://"):
        return False
    return not bind[len("tcp://") :].startswith(LOOPBACK_HOSTS)


def refusals(monitor: zmq.Socket) -> int:
    """The refused handshakes among the events waiting on an inbound socket's monitor (read
    without blocking). A keyless peer retries, so this counts attempts, not peers."""
    refused = 0
    while True:
        try:
            event = recv_monitor_message(monitor, flags=zmq.NOBLOCK)
        except zmq.Again:
            return refused
        refused += event["event"] in REFUSED


def secure_server(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Before bind: the socket answers only CURVE handshakes with the run's key pair."""
    sock.curve_server = True
    sock.curve_publickey = keys.public.encode("ascii")
    sock.curve_secretkey = keys.secret.encode("ascii")
    sock.zap_domain = DOMAIN.encode("ascii")


def secure_client(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Before connect: the socket proves it holds the run's secret and checks the peer does."""
    sock.curve_serverkey = keys.public.encode("ascii")
    sock.curve_publickey = keys.public.encode("ascii")
    sock.curve_secretkey = keys.secret.encode("ascii")


class _RunKeyOnly:
    """pyzmq's credentials provider: admits a client whose public key is the run's."""

    def __init__(self, keys: CurveKeys):
        self.public = keys.public.encode("ascii")

    def callback(self, domain: str, key: bytes) -> bool:
        return domain == DOMAIN and key == self.public


def start_authenticator(ctx: zmq.Context, keys: CurveKeys) -> zmq.auth.thread.ThreadAuthenticator:
    """The context's ZAP handler (pyzmq's own thread): without it CURVE admits any client key.
    Stop it before terminating the context."""
    auth = zmq.auth.thread.ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain=DOMAIN, credentials_provider=_RunKeyOnly(keys))
    return auth


def launcher_router(curve: CurveKeys | None):
    """A context and a ROUTER socket for the launcher's end of a channel (the control channel,
    the time keeper's): no linger, a send to a process not connected raises, CURVE with the
    run's keys when given (and the context's authenticator, to stop before terminating it).
    Returns (context, authenticator or None, socket); bind it."""
    ctx = zmq.Context(io_threads=1)
    authenticator = start_authenticator(ctx, curve) if curve else None
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.router_mandatory = 1
    if curve is not None:
        secure_server(sock, curve)
    return ctx, authenticator, sock
