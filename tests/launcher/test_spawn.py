"""Launcher start-up: a node whose pipe is gone between two start-up steps fails the start."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from launcher.spawn import Launch, StartupError
from node import control


def test_a_broadcast_to_a_dead_node_is_a_startup_error_naming_it():
    launch = Launch(plan=None)
    alive_parent, alive_child = mp.Pipe(duplex=True)
    dead_parent, dead_child = mp.Pipe(duplex=True)
    dead_child.close()  # what a SIGKILLed node leaves behind
    launch.conns = {0: alive_parent, 1: dead_parent}
    try:
        with pytest.raises(StartupError, match="node 1 is gone"):
            for _ in range(3):  # the first write into a closed pipe may still be buffered
                launch._broadcast(control.Calibrate(steps=1))
        assert alive_child.poll(1.0)
    finally:
        for conn in (alive_parent, alive_child, dead_parent):
            conn.close()
