"""Byte and message counters of one node's links, per peer and in total."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from transport.dynamics import LOST_REASONS
from transport.wire import Packed

# "gone": a peer that took nothing for a while (a process dead without notice)
LOST_COUNTED = (*LOST_REASONS, "gone")


@dataclass
class LinkStats:
    """Per-peer byte and message counters. The uplink and the downlink each write only their
    own fields, from one thread each; scalar totals may be read from any thread meanwhile."""

    sent_bytes: Counter = field(default_factory=Counter)  # per destination, fully on the wire
    dropped_bytes: Counter = field(default_factory=Counter)  # per destination, never sent
    delivered_bytes: Counter = field(default_factory=Counter)  # per source, handed to the inbox
    total_sent: int = 0
    total_dropped: int = 0
    total_delivered: int = 0
    sent_messages: int = 0
    # What the sent bytes were: headers, payload values (each message's first buffer) and the
    # arrays that describe them (indices, scales); they add up to total_sent.
    sent_header_bytes: int = 0
    sent_value_bytes: int = 0
    dropped_messages: int = 0
    delivered_messages: int = 0
    malformed_messages: int = 0
    refused_handshakes: int = 0  # peers without the run's CURVE key that tried to connect
    inbox_overflow_messages: int = 0
    late_deliveries: int = 0  # released after their emulated delivery time (host overloaded)
    # Received but cut in the downlink queue by the sender's flush (its sender counted them sent).
    flushed_bytes: Counter = field(default_factory=Counter)  # per source
    total_flushed: int = 0
    flushed_messages: int = 0
    max_delivery_lateness: float = 0.0  # emulated seconds
    connections_opened: int = 0  # outbound sockets; beyond transport.max_connections they churn
    connections_closed: int = 0  # least recently used ones closed to stay under the cap
    # Lost to a scenario (a node down, a link down, a partition) or to a peer gone without
    # notice: per reason, by the uplink before sending, and by the downlink at delivery.
    lost_sending: Counter = field(default_factory=Counter)
    lost_receiving: Counter = field(default_factory=Counter)
    lost_bytes: int = 0  # the uplink's (what never left); the downlink's were counted sent

    def count_sent(self, packed: Packed) -> None:
        self.sent_bytes[packed.dst] += packed.size
        self.total_sent += packed.size
        self.sent_messages += 1
        self.sent_header_bytes += len(packed.header)
        self.sent_value_bytes += packed.value_bytes

    def count_dropped(self, dst: int, size: int) -> None:
        self.dropped_bytes[dst] += size
        self.total_dropped += size
        self.dropped_messages += 1

    def count_lost(self, reason: str, size: int, sending: bool) -> None:
        if sending:
            self.lost_sending[reason] += 1
            self.lost_bytes += size
        else:
            self.lost_receiving[reason] += 1

    def count_delivered(self, src: int, size: int) -> None:
        self.delivered_bytes[src] += size
        self.total_delivered += size
        self.delivered_messages += 1

    def count_flushed(self, src: int, size: int) -> None:
        self.flushed_bytes[src] += size
        self.total_flushed += size
        self.flushed_messages += 1

    def count_lateness(self, lateness: float, late_after: float) -> None:
        """A delivery `lateness` emulated seconds after its instant (late beyond `late_after`)."""
        if lateness > late_after:
            self.late_deliveries += 1
        self.max_delivery_lateness = max(self.max_delivery_lateness, lateness)

    def per_peer(self) -> dict[str, dict[int, int]]:
        """Per-link byte counters; read only after the owning threads have stopped."""
        return {
            "sent": dict(self.sent_bytes),
            "dropped": dict(self.dropped_bytes),
            "delivered": dict(self.delivered_bytes),
            "flushed": dict(self.flushed_bytes),
        }

    def totals(self) -> dict[str, float]:
        return {
            "bytes_sent": self.total_sent,
            "bytes_sent_headers": self.sent_header_bytes,
            "bytes_sent_values": self.sent_value_bytes,
            "bytes_sent_metadata": self.total_sent - self.sent_header_bytes - self.sent_value_bytes,
            "bytes_dropped": self.total_dropped,
            "bytes_delivered": self.total_delivered,
            "messages_sent": self.sent_messages,
            "messages_dropped": self.dropped_messages,
            "messages_delivered": self.delivered_messages,
            "messages_malformed": self.malformed_messages,
            "handshakes_refused": self.refused_handshakes,
            "messages_inbox_overflow": self.inbox_overflow_messages,
            "late_deliveries": self.late_deliveries,
            "bytes_flushed_downlink": self.total_flushed,
            "messages_flushed_downlink": self.flushed_messages,
            "max_delivery_lateness": self.max_delivery_lateness,
            "connections_opened": self.connections_opened,
            "connections_closed": self.connections_closed,
            **{
                f"messages_lost_{reason}": self.lost_sending[reason] + self.lost_receiving[reason]
                for reason in LOST_COUNTED
            },
            "bytes_lost": self.lost_bytes,
        }
