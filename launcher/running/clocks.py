"""Each node's clock against the launcher's, as NTP estimates it: a few probes answered with the
node's own monotonic time; the sample with the smallest round trip gives the offset, and half
that round trip bounds its error. Every emulated t0 the launcher sends is shifted by the node's
offset, so that nodes on other hosts (other clocks) start emulated time at one instant."""

from __future__ import annotations

import time
from dataclasses import dataclass

from launcher.running.outcome import StartupError
from node import control

PROBES = 8  # per node, one at a time: a probe answered while others queue would read long


@dataclass(frozen=True)
class Sample:
    sent: float  # launcher's clock, when the probe left
    node: float  # node's clock, when it answered
    received: float  # launcher's clock, when the answer came


@dataclass(frozen=True)
class ClockEstimate:
    offset: float  # wall seconds: the node's clock minus the launcher's
    uncertainty: float  # wall seconds either way: half the smallest round trip


def best_of(samples: list[Sample]) -> ClockEstimate:
    """NTP's filter: the sample with the smallest round trip, the node's reading taken to be
    at the middle of it (the error is at most half the round trip, whatever the asymmetry)."""
    best = min(samples, key=lambda s: s.received - s.sent)
    return ClockEstimate(
        offset=best.node - (best.sent + best.received) / 2,
        uncertainty=(best.received - best.sent) / 2,
    )


def synchronise(conns: dict, timeout: float, probes: int = PROBES) -> dict[int, ClockEstimate]:
    """Probe every node in turn, then tell each its offset (`ClockOffset`), which it adds to
    every t0 it is sent. A node that does not answer in time fails the start, named."""
    estimates = {}
    for node, conn in conns.items():
        samples = []
        try:
            for seq in range(probes):
                sent = time.monotonic()
                control.send(conn, control.ClockProbe(seq))
                reply = control.receive(conn, timeout)
                received = time.monotonic()
                if not isinstance(reply, control.ClockReply) or reply.seq != seq:
                    raise StartupError(f"node {node} answered clock probe {seq} with {reply}")
                samples.append(Sample(sent, reply.t, received))
            estimates[node] = best_of(samples)
            control.send(conn, control.ClockOffset(estimates[node].offset))
        except (EOFError, OSError, control.ControlError) as err:
            raise StartupError(f"node {node} is gone before the start ({err!r})") from err
    return estimates


def clock_record(estimates: dict[int, ClockEstimate], tdf: float | None, tolerance: float) -> dict:
    """For the summary: the largest offset and residual uncertainty (wall and emulated); the
    clocks are flagged, like lag, when the uncertainty exceeds the lag tolerance."""
    if not estimates:
        return {"probes": 0}
    worst = max(e.uncertainty for e in estimates.values())
    emulated = worst / tdf if tdf else None
    return {
        "probes": PROBES,
        "max_offset_ms": 1000 * max(abs(e.offset) for e in estimates.values()),
        "max_uncertainty_ms": 1000 * worst,  # wall
        "max_uncertainty_emulated_ms": None if emulated is None else 1000 * emulated,
        "flagged": emulated is not None and emulated > tolerance,
    }
