"""Choosing the dilation factor: the compute limit, what a measured demand needs, and the
search over trial factors that keeps the smallest one at which no node fell behind."""

import pytest

from launcher.calibration import (
    MAX_TRIALS,
    UTILISATION,
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


def test_a_demand_needs_the_cores_at_the_target_utilisation_and_one_core_per_node():
    assert needed(demand=17.0, demand_max=0.5, cores=2) == pytest.approx(17 / (2 * UTILISATION))
    assert needed(demand=0.1, demand_max=0.05, cores=2) == 1.0  # never below one
    # a single node whose work takes 3 CPU-s per emulated s needs 3x even on many cores
    assert needed(demand=3.2, demand_max=3.0, cores=64) == 3.0


def trial(tdf, passed, demand=10.0, demand_max=0.5):
    return Trial(tdf, passed, 0.0 if passed else 0.2, 0.3, 0.0, demand, demand_max, 1.0)


def test_a_passing_trial_is_tightened_to_what_its_demand_needs_then_verified():
    cores, need = 2, 10.0 / (2 * UTILISATION)  # 5.88
    trials = [trial(9.0, passed=True)]
    assert next_factor(trials, cores) == pytest.approx(need)
    trials.append(trial(need, passed=True))
    assert next_factor(trials, cores) is None and chosen_factor(trials) == pytest.approx(need)


def test_a_failing_trial_raises_the_factor_and_never_goes_back_below_a_failure():
    cores = 2
    trials = [trial(4.0, passed=False, demand=6.0)]  # estimate 6 / (2 x UTILISATION) = 4
    assert next_factor(trials, cores) == pytest.approx(6.0)  # 1.5x, above the estimate
    trials.append(trial(6.0, passed=True, demand=6.0))  # estimate 4: but 4 failed
    assert next_factor(trials, cores) == pytest.approx(4.4)  # just above the failure
    trials.append(trial(4.4, passed=False))
    assert next_factor(trials, cores) == pytest.approx(5.2)  # between failure and pass
    trials.append(trial(5.2, passed=True))
    assert len(trials) == MAX_TRIALS and next_factor(trials, cores) is None
    assert chosen_factor(trials) == 5.2


def test_when_no_trial_keeps_up_the_search_stops_and_adds_half_again():
    trials = [trial(2.0 * 1.5**k, passed=False, demand=1.0) for k in range(MAX_TRIALS)]
    assert next_factor(trials, cores=2) is None
    assert chosen_factor(trials) == pytest.approx(1.5 * 2.0 * 1.5 ** (MAX_TRIALS - 1))
