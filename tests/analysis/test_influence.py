"""Fixed-routing influence: columns/rows by one solve equal the dense inverse; attention and SSM likewise."""

import math

import pytest
import torch

from sessa.analysis import (
    FixedDecaySSM,
    attention_influence,
    feedback_influence,
    lag_profile,
    mixer_attention_influence,
    mixer_feedback_influence,
    ssm_impulse_response,
)
from sessa.layers import SessaMixer
from sessa.ops.feedback import IMPLS
from sessa.ops.feedback.naive import feedback_weights


def dense_inverse(q, k, gamma, scale):
    """(I - diag(gamma) alpha_fb)^{-1} as [B, H, T, T], the test oracle (small T only)."""
    alpha = feedback_weights(q, k, scale=scale)
    T = q.shape[1]
    m = torch.eye(T, dtype=q.dtype) - gamma.transpose(1, 2)[..., None] * alpha
    return torch.linalg.inv(m)


@pytest.mark.parametrize("impl", sorted(IMPLS))
def test_feedback_column_and_row_match_dense_inverse(impl):
    B, T, H, d = 2, 13, 2, 3
    q, k = torch.randn(B, T, H, d, dtype=torch.float64), torch.randn(B, T, H, d, dtype=torch.float64)
    gamma = 0.95 * torch.tanh(torch.randn(B, T, H, dtype=torch.float64))
    scale = 1 / math.sqrt(d)
    inv = dense_inverse(q, k, gamma, scale)  # [B, H, T, T]
    kw = {"scale": scale, "impl": impl, "chunk_size": 4}
    for tau in (0, 5, T - 1):
        col = feedback_influence(q, k, gamma, source=tau, **kw)
        torch.testing.assert_close(col, inv[..., :, tau].transpose(1, 2), rtol=1e-9, atol=1e-12)
    for t in (0, 7, T - 1):
        row = feedback_influence(q, k, gamma, target=t, **kw)
        torch.testing.assert_close(row, inv[..., t, :].transpose(1, 2), rtol=1e-9, atol=1e-12)


def test_mixer_feedback_influence_uses_realised_routing():
    mixer = SessaMixer(8, 2).double()
    a = torch.randn(2, 10, 8, dtype=torch.float64)
    q_b, k_b, gamma = mixer.feedback_inputs(a)
    inv = dense_inverse(q_b.detach(), k_b.detach(), gamma.detach(), 1 / math.sqrt(8))[:, 0]
    torch.testing.assert_close(mixer_feedback_influence(mixer, a, source=3), inv[:, :, 3], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(mixer_feedback_influence(mixer, a, target=9), inv[:, 9, :], rtol=1e-9, atol=1e-12)
    # with f = attention output, the row really is ds_9 / df_tau of the module's own solve
    f = torch.randn(2, 10, 8, dtype=torch.float64, requires_grad=True)
    from sessa.ops import feedback_solve

    s = feedback_solve(q_b.detach(), k_b.detach(), f[:, :, None], gamma.detach(), scale=1 / math.sqrt(8))
    (g,) = torch.autograd.grad(s[:, 9, 0, 2].sum(), f)
    torch.testing.assert_close(g[:, :, 2], inv[:, 9, :], rtol=1e-9, atol=1e-12)


def test_attention_influence_matches_softmax_with_gqa():
    B, T, H, Hkv, d = 2, 9, 4, 2, 4
    q, k = torch.randn(B, T, H, d, dtype=torch.float64), torch.randn(B, T, Hkv, d, dtype=torch.float64)
    kk = k.repeat_interleave(H // Hkv, dim=2)
    logits = torch.einsum("bthd,bshd->bhts", q, kk) / math.sqrt(d)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    alpha = torch.softmax(logits.masked_fill(~causal, float("-inf")), -1)  # [B, H, T, T]
    torch.testing.assert_close(attention_influence(q, k, source=2), alpha[..., 2].transpose(1, 2))
    torch.testing.assert_close(attention_influence(q, k, target=6), alpha[..., 6, :].transpose(1, 2))


def test_mixer_attention_influence_with_rope_is_df_dv():
    mixer = SessaMixer(8, 2, feedback=False).double()
    a = torch.randn(1, 7, 8, dtype=torch.float64)
    q, k, _ = mixer.forward_qkv(a, torch.arange(7))
    logits = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(4)
    alpha = torch.softmax(logits.masked_fill(~torch.ones(7, 7, dtype=torch.bool).tril(), float("-inf")), -1)
    got = mixer_attention_influence(mixer, a, source=1)
    torch.testing.assert_close(got, alpha[..., 1].transpose(1, 2).detach())


def test_ssm_impulse_matches_autograd_of_the_scan():
    # B_t, C_t input-independent (random constants), so the scan is linear and its Jacobian is the impulse
    ssm = FixedDecaySSM(3, 4, decay=0.8).double()
    with torch.no_grad():
        ssm.B_proj.weight.zero_()
        ssm.C_proj.weight.zero_()
    x = torch.randn(1, 8, 3, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(ssm, x)[0, :, :, 0]  # [T, P, T, P]
    resp = ssm.influence(x, source=2)[0]
    for t in range(8):
        torch.testing.assert_close(J[t, :, 2, :], resp[t] * torch.eye(3, dtype=torch.float64))
    # the generic function with a varying decay, against an explicit product
    ld, b, c = -torch.rand(1, 6, 2, dtype=torch.float64), torch.randn(1, 6, 2, dtype=torch.float64), torch.randn(
        1, 6, 2, dtype=torch.float64
    )
    r = ssm_impulse_response(ld, b, c, source=1)[0]
    expect = (c[0, 4] * torch.exp(ld[0, 2:5].sum(0)) * b[0, 1]).sum()
    torch.testing.assert_close(r[4], expect)
    assert r[0] == 0


def test_mamba2_impulse_reproduces_the_modules_own_scan():
    pytest.importorskip("transformers.models.mamba2.modeling_mamba2")
    from sessa.analysis import mamba2_impulse_response
    from sessa.layers.mixers import build_mixer
    from sessa.models import SessaConfig

    opts = {"head_dim": 8, "state_size": 4, "chunk_size": 4}
    mixer = build_mixer(SessaConfig(d_model=16, mixer="mamba2", mixer_options=opts)).double().eval()
    a = torch.randn(2, 10, 16, dtype=torch.float64)
    cols = [mamba2_impulse_response(mixer, a, source=tau) for tau in range(10)]
    store = cols[0][1]
    M = torch.stack([c[0] for c in cols], -1)  # [B, t, H, tau]
    assert torch.all(M[:, 0, :, 1:] == 0)  # causal
    x = store["x"].double()
    # y_t = sum_tau impulse[t, tau] x_tau + D x_t is the scan output the module computed (in float32)
    y = torch.einsum("bths,bshp->bthp", M, x) + store["D"].double()[:, None] * x
    torch.testing.assert_close(y.reshape(store["y"].shape), store["y"].double(), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="Mamba2"):
        mamba2_impulse_response(SessaMixer(4), torch.randn(1, 3, 4), source=0)


def test_lag_profile_and_validation():
    v = torch.arange(10.0)[None]
    assert lag_profile(v, source=3).tolist() == [[3.0, 4, 5, 6, 7, 8, 9]]
    assert lag_profile(v, target=3).tolist() == [[3.0, 2, 1, 0]]
    q = torch.randn(1, 5, 1, 2)
    g = torch.rand(1, 5, 1)
    with pytest.raises(ValueError, match="exactly one"):
        feedback_influence(q, q, g, source=0, target=1)
    with pytest.raises(ValueError, match="source"):
        feedback_influence(q, q, g, source=5)
    with pytest.raises(TypeError, match="target"):
        feedback_influence(q, q, g, target=1.0)
    with pytest.raises(TypeError, match="SessaMixer"):
        mixer_feedback_influence(torch.nn.Linear(2, 2), torch.randn(1, 3, 2), source=0)
