"""The paper's constructions, measured through the real modules, show the theory's tails (docs/equations.md §5)."""

import math

import numpy as np
import pytest
import torch

from sessa.analysis import (
    compare_tails,
    fit_tail,
    fixed_decay_influence,
    selective_retrieval_influence,
    uniform_attention_influence,
    uniform_routing_influence,
    uniform_routing_sessa,
    uniform_routing_theory,
)

MAX_LAG = 4096
FIT = (64, 4096)  # asymptotic regime: the O(1/l) corrections to the local slope are < 1e-2 from l = 64
LAGS = np.arange(MAX_LAG + 1)


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99])
def test_uniform_routing_tail_exponent(gamma):
    prof = uniform_routing_influence(gamma, MAX_LAG)
    # the real op reproduces the closed form s_t = (gamma/t) prod_{j<t}(1 + gamma/j) ...
    torch.testing.assert_close(prof, uniform_routing_theory(gamma, MAX_LAG), rtol=1e-9, atol=1e-12)
    # ... whose fitted exponent is 1 - gamma
    fit = fit_tail(LAGS, prof.numpy(), "power", lag_range=FIT)
    assert abs(fit.exponent - (1 - gamma)) < 0.05
    assert fit.ci_low - 0.05 < 1 - gamma < fit.ci_high + 0.05
    assert compare_tails(LAGS, prof.numpy(), lag_range=FIT)["better"] == "power"


def test_uniform_routing_is_routing_not_keys():
    # q_b = 0 makes every logit 0 whatever the keys: alpha_fb[t, j] = 1/t exactly
    mixer = uniform_routing_sessa(0.7, 6)
    a = torch.randn(1, 9, 6, dtype=torch.float64)
    q_b, k_b, gamma = mixer.feedback_inputs(a)
    assert torch.all(q_b == 0) and k_b.abs().sum() > 0
    torch.testing.assert_close(gamma, torch.full_like(gamma, 0.7))


def test_uniform_attention_tail_is_one_over_lag():
    prof = uniform_attention_influence(MAX_LAG)
    torch.testing.assert_close(prof, 1 / (torch.arange(MAX_LAG + 1, dtype=torch.float64) + 1))
    fit = fit_tail(LAGS, prof.numpy(), "power", lag_range=FIT)
    assert abs(fit.exponent - 1.0) < 0.05  # stated tolerance; 1/(l+1) has local slope l/(l+1)


def test_fixed_decay_ssm_is_exponential_not_power_law():
    decay = 0.99
    prof = fixed_decay_influence(MAX_LAG, decay=decay)
    cmp = compare_tails(LAGS, prof.numpy(), lag_range=FIT)
    # the least-squares power law is the best of all power laws in log space, so this covers "any"
    assert cmp["better"] == "exp"
    assert cmp["exp"].rss < 1e-6 * cmp["power"].rss
    assert cmp["exp"].exponent == pytest.approx(-math.log(decay), rel=1e-6)


def test_selective_retrieval_does_not_decay():
    prof = selective_retrieval_influence(MAX_LAG, gamma=0.9)
    ratio = float(prof[4096] / prof[16])
    assert 0.95 < ratio < 1.05  # stated factor: within 5% between lag 16 and lag 4096
    assert float(prof[4096]) == pytest.approx(0.9, rel=1e-3)  # ~ gamma: one hop straight to the chosen token
    # contrast: diffuse routing with the same gain and the Transformer both lose far more than that factor
    diffuse = uniform_routing_influence(0.9, MAX_LAG)
    assert float(diffuse[4096] / diffuse[16]) < 0.8
    attn = uniform_attention_influence(MAX_LAG)
    assert float(attn[4096] / attn[16]) < 0.01


def test_construction_validation():
    with pytest.raises(ValueError, match="gamma"):
        uniform_routing_sessa(0.9995)
    with pytest.raises(ValueError, match="gamma"):
        uniform_routing_sessa(0.0)
    with pytest.raises(ValueError, match="decay"):
        fixed_decay_influence(100, decay=1.0)
    with pytest.raises(ValueError, match="sharpness"):
        selective_retrieval_influence(100, sharpness=0.0)
    with pytest.raises(ValueError, match="max_lag"):
        uniform_attention_influence(0)
