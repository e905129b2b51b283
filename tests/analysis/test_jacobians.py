"""End-to-end Jacobians by VJP/JVP equal brute-force torch.autograd.functional.jacobian on tiny T."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from sessa.analysis import embed_inputs, hidden_stack, jacobian_norms, jacobian_norms_jvp, transport_scores
from sessa.layers import GatedBlock, SessaLayer
from sessa.models import SessaConfig, SessaLM


def brute(fn, x):
    """Full Jacobian [B, T, D, T, D] (batch elements are independent, so the cross-batch blocks are dropped)."""
    with sdpa_kernel([SDPBackend.MATH]):
        J = torch.autograd.functional.jacobian(fn, x)  # [B, T, D, B, T, D]
    return torch.stack([J[b, :, :, b] for b in range(x.shape[0])])


def norms_by_lag(J, target):
    return J[:, target].permute(0, 2, 1, 3)[:, : target + 1].flatten(2).norm(dim=-1).flip(1)


@pytest.fixture
def layer():
    return SessaLayer(4, 2, gamma_max=0.9).double()


@pytest.mark.parametrize("target", [None, 3])
def test_vjp_norms_match_brute_force(layer, target):
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    J = brute(layer, x)
    t = 6 if target is None else target
    torch.testing.assert_close(jacobian_norms(layer, x, target=target), norms_by_lag(J, t))


def test_jvp_norms_match_brute_force(layer):
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    J = brute(layer, x)
    expect = J[:, 2:, :, 2].flatten(2).norm(dim=-1)  # ||dy_{2+l} / dx_2||
    torch.testing.assert_close(jacobian_norms_jvp(layer, x, source=2), expect)


def test_jvp_agrees_with_vjp_on_the_chunked_path():
    layer = SessaLayer(4, gamma_max=0.9).double()  # impl "auto": chunked solve for T > 8
    x = torch.randn(1, 12, 4, dtype=torch.float64)
    fwd = jacobian_norms_jvp(layer, x, source=0)  # ||dy_l / dx_0||
    bwd = jacobian_norms(layer, x, target=11)  # ||dy_11 / dx_{11-l}||
    torch.testing.assert_close(fwd[:, 11], bwd[:, 11])
    assert layer.mixer.impl == "auto"  # restored after forward mode


def test_random_probes_estimate_the_frobenius_norm():
    layer = SessaLayer(4, 2, gamma_max=0.9, impl="naive").double()
    x = torch.randn(1, 6, 4, dtype=torch.float64)
    exact = jacobian_norms(layer, x)
    est = jacobian_norms(layer, x, probes=100, seed=1)
    assert not torch.equal(est, exact)
    torch.testing.assert_close(est, exact, rtol=0.25, atol=0.0)  # Hutchinson, 100 probes: ~7% standard error


def test_transport_scores_through_a_stack():
    blocks = torch.nn.ModuleList([SessaLayer(4, gamma_max=0.9), SessaLayer(4, gamma_max=0.9)]).double()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    u_t, u_s = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    J = brute(hidden_stack(blocks), x)
    expect = torch.einsum("d,bdte,e->bt", u_t, J[:, 5], u_s)[:, :6].flip(1)
    torch.testing.assert_close(transport_scores(blocks, x, u_target=u_t, u_source=u_s), expect)


def test_language_model_uses_its_residual_stream():
    model = SessaLM(SessaConfig(vocab_size=11, d_model=4, n_layers=2, max_seq_len=16)).double()
    ids = torch.randint(0, 11, (1, 6))
    h0 = embed_inputs(model, ids)
    J = brute(hidden_stack(model.model.layers), h0)
    torch.testing.assert_close(jacobian_norms(model, h0), norms_by_lag(J, 5))


@pytest.mark.parametrize("mixer", ["attention", "mamba2"])
def test_baseline_blocks(mixer):
    from sessa.layers.mixers import build_mixer

    opts = {"head_dim": 4, "state_size": 4, "chunk_size": 4} if mixer == "mamba2" else {}
    m = build_mixer(SessaConfig(d_model=8, n_heads=2, mixer=mixer, mixer_options=opts))
    block = GatedBlock(8, m).double().eval()
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(jacobian_norms(block, x, target=4), norms_by_lag(brute(block, x), 4))


def test_validation(layer):
    x = torch.randn(1, 5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="target"):
        jacobian_norms(layer, x, target=5)
    with pytest.raises(TypeError, match="probes"):
        jacobian_norms(layer, x, probes="all")
    with pytest.raises(ValueError, match="probes"):
        jacobian_norms(layer, x, probes=0)
    with pytest.raises(ValueError, match="x must have 3"):
        jacobian_norms(layer, x[0])
    with pytest.raises(ValueError, match="u_target"):
        transport_scores(layer, x, u_target=torch.ones(3, dtype=torch.float64))
