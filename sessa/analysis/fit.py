"""Fits of memory tails: power law y = c * lag^(-beta) and exponential y = c * exp(-kappa * lag).

Both are ordinary least squares on log y (against log lag, resp. lag), on lags spaced evenly in log lag so
that the long tail is not outweighed by the many short lags. Each fit carries the standard error of its
slope, a confidence interval (Student t from the standard error, or a pairs bootstrap) and the residual sum
of squares in log y. Both models have two parameters, so comparing their RSS on the same points is the
same as comparing AIC/BIC: the smaller RSS is the better model.

Note: a measured influence curve is deterministic, so its residuals are systematic (curvature), not noise.
The intervals quantify how well a straight line describes the curve over the chosen range, not sampling error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from sessa.utils.checks import check_float, check_int

KINDS = ("power", "exp")


@dataclass
class FitResult:
    """One fitted tail. `exponent` is beta (power) or kappa (exp); the curve is c * lag^-beta or c * e^(-kappa lag)."""

    kind: str
    exponent: float
    stderr: float
    ci_low: float
    ci_high: float
    level: float
    ci_method: str
    log_intercept: float  # log c
    rss: float  # residual sum of squares of log y
    r2: float
    n_points: int
    lag_min: int
    lag_max: int

    def predict(self, lags: Sequence[float] | np.ndarray) -> np.ndarray:
        """The fitted curve at the given lags."""
        x = np.asarray(lags, dtype=np.float64)
        if self.kind == "power":
            return np.exp(self.log_intercept - self.exponent * np.log(x))
        return np.exp(self.log_intercept - self.exponent * x)

    def to_dict(self) -> dict:
        return asdict(self)


def geometric_lags(lo: int, hi: int, n: int) -> np.ndarray:
    """About n distinct integer lags from lo to hi (both included), evenly spaced in log lag."""
    lo, hi, n = (int(v) if isinstance(v, np.integer) else v for v in (lo, hi, n))
    lo = check_int("lo", lo, lo=1)
    hi = check_int("hi", hi, lo=lo)
    n = check_int("n", n, lo=2)
    return np.unique(np.round(np.geomspace(lo, hi, n)).astype(np.int64))


def t_quantile(p: float, df: int) -> float:
    """Student-t quantile for probability p (Cornish-Fisher series about the normal; fine for df >= 3)."""
    check_float("p", p, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_int("df", df, lo=1)
    z = NormalDist().inv_cdf(p)  # the standard normal quantile (Wichura's AS241, full double precision)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def _select(lags, values, lag_range, n_points) -> tuple[np.ndarray, np.ndarray]:
    """Validate, restrict to lag_range and thin to ~n_points log-spaced lags."""
    x = np.asarray(lags, dtype=np.float64).reshape(-1)
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"lags and values must have the same length, got {x.size} and {y.size}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if lag_range is not None:
        if len(lag_range) != 2 or not lag_range[0] <= lag_range[1]:
            raise ValueError(f"lag_range must be (lo, hi) with lo <= hi, got {lag_range!r}")
        keep = (x >= lag_range[0]) & (x <= lag_range[1])
        x, y = x[keep], y[keep]
    # checked on every lag of the range, before thinning, so no bad value is skipped silently
    bad = ~np.isfinite(y) | (y <= 0)
    if bad.any():
        raise ValueError(
            f"values must be finite and > 0 to fit a tail on a log scale; lag {x[bad][0]:g} has {y[bad][0]!r}"
        )
    if n_points is not None and x.size > n_points:
        if n_points < 3:
            raise ValueError(f"n_points must be >= 3, got {n_points}")
        if not np.all(x >= 1):
            raise ValueError("log-spaced thinning needs lags >= 1")
        grid = np.geomspace(x.min(), x.max(), n_points)
        idx = np.unique(np.searchsorted(x, grid).clip(0, x.size - 1))
        x, y = x[idx], y[idx]
    if x.size < 3:
        raise ValueError(f"need at least 3 lags in the fit range, got {x.size} (lag_range={lag_range})")
    return x, y


def _ols(u: np.ndarray, v: np.ndarray) -> tuple[float, float, float, float]:
    """v = a + b u: returns (a, b, stderr(b), rss)."""
    n = u.size
    um, vm = u.mean(), v.mean()
    sxx = float(((u - um) ** 2).sum())
    if sxx == 0:
        raise ValueError("lags in the fit range must not all be equal")
    b = float(((u - um) * (v - vm)).sum() / sxx)
    a = float(vm - b * um)
    rss = float(((v - a - b * u) ** 2).sum())
    se = math.sqrt(rss / (n - 2) / sxx) if n > 2 else float("nan")
    return a, b, se, rss


def fit_tail(
    lags: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    kind: str = "power",
    *,
    lag_range: tuple[float, float] | None = None,
    n_points: int | None = 48,
    level: float = 0.95,
    n_boot: int = 0,
    seed: int = 0,
) -> FitResult:
    """Fit log y = log c - beta log lag ("power") or log c - kappa lag ("exp") by least squares.

    n_boot > 0 gives a percentile pairs-bootstrap interval (seeded), else a Student-t interval from the
    standard error of the slope.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    check_float("level", level, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_int("n_boot", n_boot, lo=0)
    x, y = _select(lags, values, lag_range, n_points)
    if kind == "power" and not np.all(x > 0):
        raise ValueError("a power-law fit needs lags > 0 (log lag)")
    u = np.log(x) if kind == "power" else x
    v = np.log(y)
    a, b, se, rss = _ols(u, v)
    tss = float(((v - v.mean()) ** 2).sum())
    r2 = 1.0 - rss / tss if tss > 0 else 1.0
    exponent = -b
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        boots = []
        for _ in range(n_boot):
            i = rng.integers(0, x.size, x.size)
            if np.ptp(u[i]) == 0:  # a degenerate resample has no slope
                continue
            boots.append(-_ols(u[i], v[i])[1])
        lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
        method = f"bootstrap({n_boot})"
    else:
        half = t_quantile((1 + level) / 2, x.size - 2) * se if x.size > 3 else float("inf")
        lo, hi = exponent - half, exponent + half
        method = "t-stderr"
    return FitResult(
        kind=kind, exponent=exponent, stderr=se, ci_low=float(lo), ci_high=float(hi), level=float(level),
        ci_method=method, log_intercept=a, rss=rss, r2=r2, n_points=int(x.size),
        lag_min=int(x.min()), lag_max=int(x.max()),
    )


def compare_tails(
    lags: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    **fit_kwargs,
) -> dict:
    """Fit both models on the same lags; 'better' is the one with the smaller RSS of log y (same #params)."""
    power = fit_tail(lags, values, "power", **fit_kwargs)
    exp = fit_tail(lags, values, "exp", **fit_kwargs)
    return {"power": power, "exp": exp, "better": "power" if power.rss <= exp.rss else "exp"}
