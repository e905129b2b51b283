"""Tail fits: exact recovery on clean curves, honest intervals on noisy ones, model comparison, validation."""

import math

import numpy as np
import pytest

from sessa.analysis.fit import compare_tails, fit_tail, geometric_lags, t_quantile

LAGS = np.arange(1, 5001)


def test_power_law_recovered_exactly():
    y = 3.0 * LAGS**-0.37
    r = fit_tail(LAGS, y, "power", lag_range=(10, 5000))
    assert r.exponent == pytest.approx(0.37, abs=1e-10)
    assert r.log_intercept == pytest.approx(np.log(3.0), abs=1e-9)
    assert r.r2 == pytest.approx(1.0)
    assert r.lag_min >= 10 and r.lag_max <= 5000
    np.testing.assert_allclose(r.predict([10, 100]), 3.0 * np.array([10, 100]) ** -0.37, rtol=1e-9)


def test_exponential_recovered_and_preferred():
    y = 2.0 * np.exp(-0.01 * LAGS)
    cmp = compare_tails(LAGS, y, lag_range=(10, 3000))
    assert cmp["exp"].exponent == pytest.approx(0.01, rel=1e-9)
    assert cmp["better"] == "exp"
    assert cmp["exp"].rss < cmp["power"].rss


def test_power_law_preferred_over_exponential():
    cmp = compare_tails(LAGS, LAGS**-0.5, lag_range=(10, 5000))
    assert cmp["better"] == "power"


@pytest.mark.parametrize("n_boot", [0, 300])
def test_interval_covers_truth_on_noisy_data(n_boot):
    rng = np.random.default_rng(1)
    y = LAGS**-0.6 * np.exp(0.05 * rng.standard_normal(LAGS.size))
    r = fit_tail(LAGS, y, "power", lag_range=(5, 5000), n_boot=n_boot, seed=3)
    assert r.ci_low < 0.6 < r.ci_high
    assert r.ci_high - r.ci_low > 0
    assert r.ci_method.startswith("bootstrap" if n_boot else "t-stderr")
    again = fit_tail(LAGS, y, "power", lag_range=(5, 5000), n_boot=n_boot, seed=3)
    assert (again.ci_low, again.ci_high) == (r.ci_low, r.ci_high)  # seeded


def test_t_quantile_matches_tables():
    # textbook two-sided 95% critical values
    assert t_quantile(0.975, 10) == pytest.approx(2.228, abs=2e-3)
    assert t_quantile(0.975, 30) == pytest.approx(2.042, abs=1e-3)
    assert t_quantile(0.975, 10**6) == pytest.approx(1.960, abs=1e-3)


def test_t_quantile_normal_part_is_the_standard_normal_quantile():
    # the limit df -> inf is the normal quantile; the bisection on erf it replaced agrees to rounding
    def bisection(p):
        lo, hi = -40.0, 40.0
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p else (lo, mid)
        return (lo + hi) / 2

    for p in (1e-9, 0.01, 0.025, 0.3, 0.5, 0.8, 0.975, 0.995, 1 - 1e-9):
        assert t_quantile(p, 10**12) == pytest.approx(bisection(p), rel=1e-9, abs=1e-12)
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="p"):
            t_quantile(bad, 10)
    with pytest.raises(ValueError, match="df"):
        t_quantile(0.9, 0)


def test_geometric_lags():
    g = geometric_lags(64, 4096, 20)
    assert g[0] == 64 and g[-1] == 4096 and np.all(np.diff(g) > 0)
    with pytest.raises(ValueError, match="lo"):
        geometric_lags(0, 10, 5)


def test_validation():
    y = LAGS**-0.5
    with pytest.raises(ValueError, match="kind"):
        fit_tail(LAGS, y, "linear")
    with pytest.raises(ValueError, match="same length"):
        fit_tail(LAGS, y[:-1])
    bad = y.copy()
    bad[100] = 0.0
    with pytest.raises(ValueError, match="> 0"):
        fit_tail(LAGS, bad, lag_range=(50, 200))
    with pytest.raises(ValueError, match="at least 3"):
        fit_tail(LAGS, y, lag_range=(10, 11))
    with pytest.raises(ValueError, match="level"):
        fit_tail(LAGS, y, level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        fit_tail(LAGS, y, n_boot=-1)
