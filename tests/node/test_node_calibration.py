"""A node's trial rounds: what they leave out of the slack they report."""

from node.calibration import _RoundClock
from node.counters import fresh_counters


def test_a_trial_judges_slack_after_its_first_round_and_lag_in_every_round():
    counters = fresh_counters()
    rounds = _RoundClock(counters)
    counters.update(slack_min=-0.3, behind_max=0.05)  # round 0: peers still connecting
    rounds.write({"t": 0.62})
    assert counters["slack_min"] == 1.0 and counters["behind_max"] == 0.05
    counters["slack_min"] = 0.4  # round 1
    rounds.write({"t": 1.24})
    assert counters["slack_min"] == 0.4 and [t for t, _ in rounds.marks] == [0.62, 1.24]
