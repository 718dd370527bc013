"""Between the algorithm's messages (`Outgoing`, `Incoming`: the values and a codec's extra
arrays, no transport) and the transport's `Message` (buffers, stamped with emulated times).
On the wire, the first buffer is the payload values; the others describe them."""

from __future__ import annotations

from node.algorithms import Incoming, Outgoing, Rejected
from transport import Message


def incoming(msg: Message) -> Incoming:
    """What an algorithm sees of a delivered message; Rejected unless it carries an array."""
    if not msg.buffers:
        raise Rejected(f"{msg.kind} from {msg.src} carries no buffer")
    return Incoming(
        msg.kind,
        msg.src,
        msg.round,
        msg.buffers[0],
        msg.frag,
        dict(msg.aux),
        msg.t_start,
        tuple(msg.buffers[1:]),
    )


def outgoing(node: int, round_: int, messages: list[Outgoing]) -> list[Message]:
    """The algorithm's messages as sent by `node` in its round `round_`."""
    return [
        Message(m.kind, node, m.dst, round_, m.frag, (m.values, *m.extra), m.aux) for m in messages
    ]
