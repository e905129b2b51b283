"""Statistics of a bench table: standard errors of each model's mean and the significance of differences.

- An accuracy measured on n independent examples has the binomial standard error sqrt(p (1 - p) / n).
  n counts test EXAMPLES, not scored tokens: the answers of one example are not independent, so this
  is the conservative choice.
- Over k >= 2 seeds the standard error of the mean is std / sqrt(k) (the seed spread already contains the
  test-set noise); we report the larger of that and the binomial SE of the mean, since 2-3 seeds can
  show a spread that is too small by chance. A single seed has only the binomial SE (perplexity: none).
- Two models differ significantly when the normal approximation of their difference of means,
  z = delta / sqrt(se_a^2 + se_b^2), gives a two-sided p below 0.05. With 3 seeds this is a rough guide.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

_NORMAL = statistics.NormalDist()


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n independent examples."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else math.inf


def mean_se(model: dict[str, Any], metric: str) -> float | None:
    """Standard error of a bench model's mean `metric` over its seeds (see the module docstring)."""
    runs = model["runs"]
    values = [r["test"].get(metric) for r in runs]
    if any(not isinstance(v, (int, float)) for v in values):
        return None
    k = len(values)
    seed_se = statistics.stdev(values) / math.sqrt(k) if k > 1 else None
    binom = None
    if metric in ("accuracy", "top5"):  # the binomial SE of the mean over seeds
        variances = [binomial_se(v, r["test"]["examples"]) ** 2 for v, r in zip(values, runs, strict=True)]
        binom = math.sqrt(sum(variances)) / k
    known = [x for x in (seed_se, binom) if x is not None]
    return max(known) if known else None


def two_sided_p(delta: float, se_a: float | None, se_b: float | None) -> float | None:
    """Two-sided p of a difference of two means with these standard errors (normal approximation)."""
    if se_a is None or se_b is None:
        return None
    se = math.hypot(se_a, se_b)
    if se == 0.0:
        return 0.0 if delta != 0.0 else 1.0
    return 2.0 * (1.0 - _NORMAL.cdf(abs(delta) / se))


def compare_to(models: dict[str, Any], reference: str, metric: str) -> dict[str, dict[str, float | None]]:
    """name -> {"delta": mean - reference mean, "p": two-sided p} for every model but the reference."""
    if reference not in models:
        return {}
    ref = models[reference]
    ref_mean, ref_se = ref["summary"][metric]["mean"], mean_se(ref, metric)
    out: dict[str, dict[str, float | None]] = {}
    for name, m in models.items():
        mean = m["summary"][metric]["mean"]
        if name == reference or mean is None or ref_mean is None:
            continue
        out[name] = {"delta": mean - ref_mean, "p": two_sided_p(mean - ref_mean, mean_se(m, metric), ref_se)}
    return out
