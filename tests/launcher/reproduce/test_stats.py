"""The intervals of a reproduction against values known without scipy's help."""

import itertools

import numpy as np
import pytest

from launcher.reproduce.stats import band, mean_interval, paired_bootstrap


def test_the_t_interval_of_a_fixed_sample():
    # 1..5: mean 3, standard error sqrt(2.5 / 5); t(0.975, 4 df) = 2.7764451 (printed tables)
    est = mean_interval([1, 2, 3, 4, 5])
    half = 2.7764451 * np.sqrt(2.5 / 5)
    assert est.value == 3
    assert est.low == pytest.approx(3 - half, rel=1e-6)
    assert est.high == pytest.approx(3 + half, rel=1e-6)
    assert est.n == 5


def test_one_value_has_no_interval_and_equal_values_a_point():
    assert mean_interval([0.7]).low is None and mean_interval([0.7]).value == 0.7
    assert mean_interval([]).value is None
    same = mean_interval([0.5, 0.5, 0.5])
    assert (same.low, same.value, same.high) == (0.5, 0.5, 0.5)


def _exact_percentiles(a, b, fn, confidence=0.95):
    """Every paired resample of three seeds is one of 27, equally likely: the percentile
    interval the bootstrap approximates, computed exactly."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    values = sorted(fn(a[list(i)], b[list(i)]) for i in itertools.product(range(3), repeat=3))
    weights = np.full(len(values), 1 / len(values))
    cdf = np.cumsum(weights)
    tail = (1 - confidence) / 2
    low = values[int(np.searchsorted(cdf, tail - 1e-12))]
    high = values[int(np.searchsorted(cdf, 1 - tail - 1e-12))]
    return low, high


@pytest.mark.parametrize(
    ("statistic", "fn"),
    [
        ("ratio", lambda x, y: x.mean() / y.mean()),
        ("difference", lambda x, y: x.mean() - y.mean()),
        ("reduction", lambda x, y: 1 - x.mean() / y.mean()),
    ],
)
def test_the_paired_bootstrap_approaches_the_exact_resample_distribution(statistic, fn):
    slow, fast = [30.0, 24.0, 27.0], [10.0, 12.0, 9.0]
    est = paired_bootstrap(slow, fast, statistic)
    low, high = _exact_percentiles(slow, fast, fn)
    assert est.value == pytest.approx(fn(np.array(slow), np.array(fast)))
    spread = high - low
    assert est.low == pytest.approx(low, abs=0.05 * spread)
    assert est.high == pytest.approx(high, abs=0.05 * spread)
    assert est.low <= est.value <= est.high


def test_the_bootstrap_is_paired_by_seed_and_repeats_itself():
    # Seed by seed b is twice a: paired, every resample has the ratio 2 exactly.
    est = paired_bootstrap([2.0, 8.0, 20.0], [1.0, 4.0, 10.0], "ratio")
    assert (est.low, est.value, est.high) == pytest.approx((2.0, 2.0, 2.0))
    again = paired_bootstrap([30.0, 24.0, 27.0], [10.0, 12.0, 9.0], "ratio")
    assert again == paired_bootstrap([30.0, 24.0, 27.0], [10.0, 12.0, 9.0], "ratio")
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0, 2.0], [1.0], "ratio")


def test_the_band_is_the_pointwise_t_interval():
    curves = [[0.1, 0.5], [0.3, 0.7], [0.2, 0.6]]
    mean, low, high = band(curves)
    for i in range(2):
        est = mean_interval([c[i] for c in curves])
        assert (mean[i], low[i], high[i]) == pytest.approx((est.value, est.low, est.high))
