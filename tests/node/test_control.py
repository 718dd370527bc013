"""The launcher-node control protocol: typed messages through a real pipe, and bad input."""

import multiprocessing as mp

import msgpack
import pytest

from node import control


@pytest.fixture
def pipe():
    a, b = mp.Pipe(duplex=True)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize(
    "message",
    [
        control.Ready(3, "tcp://127.0.0.1:5555"),
        control.Peers({0: "tcp://a:1", 12: "tcp://b:2"}),
        control.Peers({0: "tcp://a:1"}, gate="tcp://127.0.0.1:7000"),
        control.Calibrate(64),
        control.TrialPrepare(),
        control.TrialReady(2, "tcp://127.0.0.1:6000"),
        control.TrialStart({0: "tcp://a:1"}, t0=12.5, tdf=3.0, rounds=2),
        control.TrialDone(2, {"behind_max": 0.001, "delivered": 12}),
        control.Start(t0=1234.5, tdf=17.25),
        control.Progress(2, 1.5, 3, {"bytes_sent": 10, "behind_max": 0.0}),
        control.Done(1, {"steps": 5}, {"sent": {2: 100}}, ["boom"]),
        control.Failed(1, "Traceback ..."),
        control.Stop(),
        control.Departed(3, 7.25),
        control.Evaluated(4, 2.0, {"accuracy": 0.5, "loss": 1.25}),
        control.EvaluatorDone(0),
    ],
)
def test_every_message_crosses_a_pipe_unchanged(pipe, message):
    a, b = pipe
    control.send(a, message)
    assert control.receive(b, timeout=5) == message


def test_nothing_to_read_is_none_and_an_unknown_message_an_error(pipe):
    a, b = pipe
    assert control.receive(b, timeout=0.01) is None
    a.send_bytes(msgpack.packb({"type": "Shutdown", "now": True}))
    with pytest.raises(control.ControlError):
        control.receive(b, timeout=5)
    a.send_bytes(msgpack.packb({"type": "Ready", "node": 1}))  # a field missing
    with pytest.raises(control.ControlError):
        control.receive(b, timeout=5)


def test_expect_names_what_it_wanted_and_what_came(pipe):
    a, b = pipe
    control.send(a, control.Stop())
    with pytest.raises(control.ControlError, match="node 7: expected .*Peers.* got Stop"):
        control.expect(b, control.Peers, timeout=5, node_id=7)
    assert control.Evaluated(4, 2.0, {"accuracy": 0.5}).record() == {
        "node": 4,
        "t": 2.0,
        "accuracy": 0.5,
    }
