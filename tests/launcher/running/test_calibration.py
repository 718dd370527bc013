"""Choosing the dilation factor: the compute limit, what a measured demand needs, and the
search over trial factors that keeps the smallest one at which no node fell behind."""

import dataclasses

import pytest

from launcher.running.calibration import (
    MAX_RAISE,
    MAX_TRIALS,
    MIN_SLACK,
    Hosts,
    Trial,
    chosen_factor,
    compute_limit,
    needed,
    next_factor,
)


def test_the_compute_limit_fits_every_nodes_steps_into_the_cores():
    # 60 nodes needing 2 ms CPU per 5 ms step: 24 CPU-s per emulated s on 2 cores -> 12x.
    cpu = {n: 0.002 for n in range(60)}
    assert compute_limit((0.005,) * 60, cpu, cores=2) == pytest.approx(12.0)
    # compute stragglers ask for less: 4 + 0.8 on one core, not 4 + 4
    assert compute_limit((0.005, 0.025), {0: 0.02, 1: 0.02}, cores=1) == pytest.approx(4.8)


def trial(tdf, passed, slack=None, demand=10.0, demand_max=0.5):
    slack = (0.3 if passed else -0.1) if slack is None else slack
    return Trial(tdf, passed, 0.0 if passed else 0.2, slack, 0.0, demand, demand_max, 1.0)


def test_a_trial_needs_the_factor_at_which_its_tightest_round_has_min_slack_to_spare():
    # busy 70% of the round at 10x: 0.7 x 10 wall units of work fill 1 - MIN_SLACK of a round
    expected = 10.0 * 0.7 / (1 - MIN_SLACK)
    assert needed(trial(10.0, True, slack=0.3), cores=2) == pytest.approx(expected)
    # behind by 20% of a round: the work took 1.2 rounds
    assert needed(trial(10.0, False, slack=-0.2), cores=2) == pytest.approx(12 / (1 - MIN_SLACK))
    # never below the cores' full load, one core for the busiest node, or real time
    assert needed(trial(10.0, True, slack=0.9, demand=17.0), cores=2) == pytest.approx(8.5)
    assert needed(trial(10.0, True, slack=0.9, demand_max=3.0), cores=64) == 3.0
    assert needed(trial(1.0, True, slack=0.9, demand=0.1, demand_max=0.05), cores=2) == 1.0


def test_a_passing_trial_is_tightened_to_what_it_needs_then_verified():
    cores = 2
    trials = [trial(9.0, passed=True, slack=0.3)]
    need = 9.0 * 0.7 / (1 - MIN_SLACK)
    assert next_factor(trials, cores) == pytest.approx(need)
    trials.append(trial(need, passed=True, slack=MIN_SLACK + 0.01))
    assert next_factor(trials, cores) is None and chosen_factor(trials) == pytest.approx(need)


def test_a_failing_trial_raises_the_factor_and_never_goes_back_below_a_failure():
    cores = 2
    trials = [trial(4.0, passed=False, slack=-0.1, demand=6.0)]  # needs 4 x 1.1 / 0.95
    assert next_factor(trials, cores) == pytest.approx(6.0)  # 1.5x, above the estimate
    trials.append(trial(6.0, passed=True, slack=0.5, demand=6.0))  # needs 3.2: 4 failed
    assert next_factor(trials, cores) == pytest.approx(4.4)  # just above the failure
    trials.append(trial(4.4, passed=False))
    assert next_factor(trials, cores) == pytest.approx(5.2)  # between failure and pass
    trials.append(trial(5.2, passed=True))
    assert len(trials) == MAX_TRIALS and next_factor(trials, cores) is None
    assert chosen_factor(trials) == 5.2


def test_a_node_far_behind_raises_the_factor_by_at_most_max_raise():
    # LASGD at 60 nodes, a step a burst: 120 ms behind a 4.85 ms span reads slack -24.9,
    # whose slack rule alone asks for about 400
    trials = [trial(11.62, passed=False, slack=-24.88, demand=20.0)]
    assert needed(trials[0], cores=2) > 300
    assert next_factor(trials, cores=2) == pytest.approx(11.62 * MAX_RAISE)


def test_a_candidate_close_to_the_smallest_pass_is_not_tried():
    trials = [trial(10.0, passed=True, slack=MIN_SLACK + 0.03)]  # would need 9.6
    assert next_factor(trials, cores=2) is None and chosen_factor(trials) == 10.0


def test_when_no_trial_keeps_up_the_search_stops_and_adds_half_again():
    trials = [trial(2.0 * 1.5**k, passed=False, slack=-0.1, demand=1.0) for k in range(MAX_TRIALS)]
    assert next_factor(trials, cores=2) is None
    assert chosen_factor(trials) == pytest.approx(1.5 * 2.0 * 1.5 ** (MAX_TRIALS - 1))


def test_on_several_machines_the_busiest_one_sets_the_limit_and_the_load():
    hosts = Hosts({0: "a", 1: "a", 2: "b"}, {"a": 2, "b": 4})
    assert hosts.split({0: 1.0, 1: 2.0, 2: 8.0}) == {"a": {0: 1.0, 1: 2.0}, "b": {2: 8.0}}
    assert hosts.busiest({0: 1.0, 1: 2.0, 2: 8.0}) == pytest.approx(2.0)  # b: 8 / 4 cores
    assert hosts.busiest({0: 3.0, 1: 3.0, 2: 8.0}) == pytest.approx(3.0)  # a: 6 / 2 cores
    one = Hosts.one(range(3), cores=2)  # the local backend: the whole demand over its cores
    assert one.busiest({0: 1.0, 1: 2.0, 2: 8.0}) == pytest.approx(11.0 / 2)
    # a trial's measured load on the busiest machine is what `needed` weighs, not the total
    busy = dataclasses.replace(trial(10.0, True, slack=0.9, demand=17.0), host_load=12.0)
    assert needed(busy, cores=64) == pytest.approx(12.0)
