"""Between the algorithm's messages (`Outgoing`, `Incoming`: one array, no transport) and the
transport's `Message` (any buffers, stamped with emulated times)."""

from __future__ import annotations

from node.algorithms import Incoming, Outgoing, Rejected
from transport import Message


def incoming(msg: Message) -> Incoming:
    """What an algorithm sees of a delivered message; Rejected unless it carries one array."""
    if len(msg.buffers) != 1:
        raise Rejected(f"{msg.kind} from {msg.src} carries {len(msg.buffers)} buffers, not 1")
    return Incoming(
        msg.kind, msg.src, msg.round, msg.buffers[0], msg.frag, dict(msg.aux), msg.t_start
    )


def outgoing(node: int, round_: int, messages: list[Outgoing]) -> list[Message]:
    """The algorithm's messages as sent by `node` in its round `round_`."""
    return [Message(m.kind, node, m.dst, round_, m.frag, (m.values,), m.aux) for m in messages]
