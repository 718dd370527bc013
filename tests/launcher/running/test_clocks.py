"""Each node's clock against the launcher's: NTP's smallest-round-trip filter, the exchange over
real pipes with a node whose clock runs elsewhere, and the summary's verdict."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from types import SimpleNamespace

import pytest

from launcher.running.clocks import (
    PROBES,
    ClockEstimate,
    Sample,
    best_of,
    clock_record,
    synchronise,
)
from launcher.running.outcome import StartupError
from node import control
from node.entry import calibrate


def test_the_smallest_round_trip_wins_and_bounds_the_error_whatever_the_asymmetry():
    true_offset = 5.0
    samples = []
    # (out, back) delays: the quickest probe has the most lopsided one
    for sent, (out, back) in enumerate([(0.010, 0.030), (0.0001, 0.0019), (0.004, 0.004)]):
        samples.append(Sample(sent, sent + out + true_offset, sent + out + back))
    estimate = best_of(samples)
    assert estimate.uncertainty == pytest.approx(0.001)  # half of 2 ms
    assert abs(estimate.offset - true_offset) <= estimate.uncertainty + 1e-12
    assert estimate.offset == pytest.approx(true_offset - 0.0009)


DEADLINE = 30.0  # wall seconds a reply over a pipe between threads may take: a bound, not a wait


def _node_elsewhere(conn, shift: float, got: list) -> None:
    """A node whose clock reads `shift` seconds ahead of the launcher's."""
    while True:
        message = control.receive(conn, DEADLINE)
        if isinstance(message, control.ClockProbe):
            control.send(conn, control.ClockReply(3, message.seq, time.monotonic() + shift))
        else:
            got.append(message)
            return


def test_the_offset_of_a_clock_elsewhere_is_found_within_its_uncertainty_and_sent_to_it():
    launcher_end, node_end = mp.Pipe()
    got: list = []
    node = threading.Thread(target=_node_elsewhere, args=(node_end, 42.5, got), daemon=True)
    node.start()
    try:
        began = time.monotonic()
        estimate = synchronise({3: launcher_end}, timeout=DEADLINE)[3]
        took = time.monotonic() - began
        node.join(DEADLINE)
    finally:
        launcher_end.close()
        node_end.close()
    assert abs(estimate.offset - 42.5) <= estimate.uncertainty
    # The uncertainty is half the smallest of the PROBES round trips, which all fit, one after
    # the other, in the time the exchange took: however slow the host, it is no more than
    # half their mean (a bound on the estimate, not on the host's speed).
    assert estimate.uncertainty <= took / (2 * PROBES)
    assert got == [control.ClockOffset(estimate.offset)]


def test_a_node_that_answers_wrongly_or_is_gone_fails_the_start_naming_it():
    launcher_end, node_end = mp.Pipe()
    control.send(node_end, control.Connected(7))  # not a clock reply
    with pytest.raises(StartupError, match="node 7 answered clock probe 0"):
        synchronise({7: launcher_end}, timeout=1.0)
    node_end.close()
    with pytest.raises(StartupError, match="node 7 is gone"):
        synchronise({7: launcher_end}, timeout=1.0)
    launcher_end.close()


def test_clocks_known_worse_than_the_lag_tolerance_are_flagged():
    estimates = {0: ClockEstimate(0.002, 0.0001), 1: ClockEstimate(-0.004, 0.0003)}
    record = clock_record(estimates, tdf=10.0, tolerance=0.06)
    assert record["probes"] == PROBES and record["max_offset_ms"] == pytest.approx(4.0)
    assert record["max_uncertainty_emulated_ms"] == pytest.approx(0.03)
    assert not record["flagged"]
    assert clock_record({0: ClockEstimate(0.0, 0.9)}, tdf=10.0, tolerance=0.06)["flagged"]
    assert clock_record({}, tdf=None, tolerance=0.06) == {"probes": 0}


def test_a_node_moves_every_t0_onto_its_own_clock():
    launcher_end, node_end = mp.Pipe()
    node = SimpleNamespace(spec=SimpleNamespace(node_id=2))
    try:
        control.send(launcher_end, control.ClockProbe(0))
        control.send(launcher_end, control.ClockOffset(2.5))
        control.send(launcher_end, control.Start(10.0, 4.0))
        start = calibrate(node, node_end, make_transport=None, timeout=5.0)
        reply = control.receive(launcher_end, 1.0)
    finally:
        launcher_end.close()
        node_end.close()
    assert isinstance(reply, control.ClockReply) and (reply.node, reply.seq) == (2, 0)
    assert start == control.Start(12.5, 4.0)
