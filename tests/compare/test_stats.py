"""The bench table's statistics: binomial and seed standard errors, two-sided p of a difference."""

import math
import statistics

import pytest

from sessa.compare.stats import binomial_se, compare_to, mean_se, two_sided_p


def _model(accs, examples=100):
    runs = [{"test": {"accuracy": a, "examples": examples}} for a in accs]
    sd = statistics.stdev(accs) if len(accs) > 1 else None
    return {"runs": runs, "summary": {"accuracy": {"mean": statistics.fmean(accs), "std": sd}}}


def test_binomial_se():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(0.0, 10) == 0.0
    assert binomial_se(0.3, 0) == math.inf


def test_mean_se_takes_the_larger_of_seed_and_binomial():
    one = _model([0.5])
    assert mean_se(one, "accuracy") == pytest.approx(0.05)  # a single seed: binomial only
    spread = _model([0.2, 0.5, 0.8])  # seed spread 0.3 / sqrt(3) dominates
    assert mean_se(spread, "accuracy") == pytest.approx(0.3 / math.sqrt(3))
    tight = _model([0.5, 0.5, 0.5], examples=100)  # no spread: the binomial SE of the mean remains
    assert mean_se(tight, "accuracy") == pytest.approx(0.05 / math.sqrt(3))
    assert mean_se({"runs": [{"test": {"perplexity": 3.0}}]}, "perplexity") is None  # no SE from one seed


def test_two_sided_p():
    assert two_sided_p(1.959964, 1.0, 0.0) == pytest.approx(0.05, abs=1e-6)
    assert two_sided_p(0.0, 0.1, 0.1) == pytest.approx(1.0)
    assert two_sided_p(0.1, None, 0.1) is None
    assert two_sided_p(0.1, 0.0, 0.0) == 0.0


def test_compare_to_reference():
    models = {"sessa": _model([0.60, 0.62, 0.61], 1000), "attention": _model([0.40, 0.41, 0.42], 1000),
              "mamba2": _model([0.60, 0.63, 0.60], 1000)}
    out = compare_to(models, "sessa", "accuracy")
    assert set(out) == {"attention", "mamba2"}
    assert out["attention"]["delta"] == pytest.approx(-0.2) and out["attention"]["p"] < 1e-6
    assert out["mamba2"]["p"] > 0.5
    assert compare_to(models, "llama", "accuracy") == {}


def test_bins_sit_at_the_mean_observed_value():
    from sessa.compare.loop import bin_accuracy

    out = bin_accuracy([134, 134, 268, 1072], [1.0, 0.0, 1.0, 0.0], n_bins=8)
    assert out["centers"][0] == 134 and out["centers"][-1] == 1072  # not the bin's midpoint
    assert out["accuracy"][0] == 0.5 and out["count"] == [2, 1, 1]
