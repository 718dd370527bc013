"""Shared fixtures: every test owns its sockets, processes and directories, and none can hang."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import zmq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def shared_data_root(tmp_path_factory):
    """One data root for the whole session: MNIST-1D is generated once per size (4 s at the
    default 20,000 samples) and cached there, instead of once per test module."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def zmq_context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


class FakeClock:
    """An injectable clock the tests move by hand: no sleeps, no flakes."""

    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def fake_clock():
    return FakeClock()
