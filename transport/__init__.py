"""Moves bytes between node processes and emulates their links; knows nothing of torch."""

from transport.clock import EmulatedClock
from transport.endpoint import LinkStats, Receiver, SendBatch, Sender
from transport.shaper import Downlink, TokenBucket
from transport.wire import FLUSH, Message, WireError, decode, encode, wire_size

__all__ = [
    "Downlink",
    "FLUSH",
    "EmulatedClock",
    "LinkStats",
    "Message",
    "Receiver",
    "SendBatch",
    "Sender",
    "TokenBucket",
    "WireError",
    "decode",
    "encode",
    "wire_size",
]
