"""The Ray backend's own checks before a node starts: addresses every machine can reach."""

from __future__ import annotations

import pytest

from launcher.running.outcome import StartupError
from launcher.running.ray_backend import check_reachable


def test_loopback_is_fine_while_every_node_is_on_the_launcher_s_machine():
    check_reachable("127.0.0.1", "tcp://127.0.0.1", "10.0.0.1", {"10.0.0.1"})


def test_a_loopback_control_address_with_nodes_elsewhere_names_the_key_and_the_fix():
    with pytest.raises(
        StartupError, match=r"launch\.host=127\.0\.0\.1 .* 10\.0\.0\.2: use launch\.host=node-ip"
    ):
        check_reachable("127.0.0.1", "tcp://10.0.0.1", "10.0.0.1", {"10.0.0.1", "10.0.0.2"})


def test_a_loopback_bind_with_nodes_elsewhere_names_the_key_and_the_fix():
    with pytest.raises(
        StartupError,
        match=r"transport\.bind=tcp://127\.0\.0\.1 .* use transport\.bind=tcp://node-ip",
    ):
        check_reachable("10.0.0.1", "tcp://127.0.0.1", "10.0.0.1", {"10.0.0.2"})


def test_machines_own_addresses_pass():
    check_reachable("10.0.0.1", "tcp://node-ip", "10.0.0.1", {"10.0.0.2", "10.0.0.3"})
