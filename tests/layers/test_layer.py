"""SessaLayer with converted reference weights == a float64 evaluation of the spec (tests/reference.py)."""

import pytest
import torch
from reference import RefLayer

from sessa import SessaLayer, SessaMixer, convert_reference_state_dict


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def make_pair(D, H, Hkv, rope, gamma_max=0.999, dtype=torch.float32):
    ref = RefLayer(D, H, Hkv, gamma_max, rope).double()
    with torch.no_grad():  # make gamma input-dependent and the biases non-trivial
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = SessaLayer(D, n_heads=H, n_kv_heads=Hkv, gamma_max=gamma_max, rope=rope).to(dtype)
    ours.load_state_dict(convert_reference_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()}))
    return ref, ours


@pytest.mark.parametrize("H,Hkv", [(1, None), (4, None), (4, 2)])
@pytest.mark.parametrize("rope", [True, False])
@pytest.mark.parametrize("T", [1, 2, 37, 300])
def test_layer_matches_spec_in_float64(H, Hkv, rope, T):
    D = 16
    ref, ours = make_pair(D, H, Hkv, rope)
    x = torch.randn(2, T, D, dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)
        got = ours(x.float())
    assert got.dtype == torch.float32 and got.shape == (2, T, D)
    assert rel_err(got, want) <= 1e-5


def test_layer_float64_end_to_end_is_exact():
    ref, ours = make_pair(8, 2, 1, True, dtype=torch.float64)
    x = torch.randn(1, 20, 8, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) <= 1e-12


def test_gradients_match_reference():
    ref, ours = make_pair(8, 2, 2, True, dtype=torch.float64)
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    ref(x).pow(2).sum().backward()
    ours(x).pow(2).sum().backward()
    conv = convert_reference_state_dict({n: p.grad for n, p in ref.named_parameters()})
    for name, p in ours.named_parameters():
        assert torch.allclose(p.grad, conv[name], rtol=1e-9, atol=1e-11), name


def test_converter_drops_buffers_keeps_prefix_and_rejects_unknown():
    ref = RefLayer(8, 2)
    sd = {f"layers.3.{k}": v for k, v in ref.state_dict().items()}
    sd["layers.3.mixer.causal_mask_f_full"] = torch.ones(4, 4)
    sd["layers.3.mixer.gamma_bias"] = torch.tensor([1.5])  # stored as a 1-vector by some versions
    out = convert_reference_state_dict(sd)
    assert "layers.3.mixer.o_proj.weight" in out and "layers.3.norm.weight" in out
    assert not any("rope_inv_freq" in k or "causal_mask" in k for k in out)
    assert out["layers.3.mixer.gamma_bias"].shape == ()
    with pytest.raises(ValueError, match="unknown key"):
        convert_reference_state_dict({"mixer.something_else": torch.zeros(1)})
    with pytest.raises(TypeError, match="sd must be a mapping"):
        convert_reference_state_dict([1, 2])


def test_initial_values():
    layer = SessaLayer(16, n_heads=2)
    assert layer.mixer.gamma_bias.item() == 1.0
    assert layer.mixer.gamma_proj.bias is None and layer.mixer.o_proj.bias is None
    assert SessaLayer(16).mixer.o_proj is None  # one head: no output projection
    assert layer.mixer.fb_proj.weight.shape == (32, 16)


def test_feedback_switch_gives_plain_attention():
    mixer = SessaMixer(16, 2, feedback=False)
    a = torch.randn(1, 9, 16)
    f = mixer.attend(*mixer.forward_qkv(a, torch.arange(9)))
    assert torch.equal(mixer(a), f)


def test_causality():
    layer = SessaLayer(16, n_heads=2)
    x = torch.randn(1, 24, 16)
    y = layer(x)
    x2 = x.clone()
    x2[:, 15:] += torch.randn(1, 9, 16)
    y2 = layer(x2)
    assert torch.allclose(y[:, :15], y2[:, :15], atol=1e-6)
    assert not torch.allclose(y[:, 15:], y2[:, 15:])


def test_empty_sequence_works():
    layer = SessaLayer(16, n_heads=2)
    y = layer(torch.randn(3, 0, 16))
    assert y.shape == (3, 0, 16)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(d_model=10, n_heads=3), ValueError, "divisible by n_heads"),
        (dict(d_model=12, n_heads=4), ValueError, "even head dim"),
        (dict(d_model=16, n_heads=4, n_kv_heads=3), ValueError, "n_kv_heads"),
        (dict(d_model=16, gamma_max=1.0), ValueError, "gamma_max"),
        (dict(d_model=16, gamma_max=0.0), ValueError, "gamma_max"),
        (dict(d_model=16, gamma_max=-0.5), ValueError, "gamma_max"),
        (dict(d_model=0), ValueError, "d_model"),
        (dict(d_model=-4), ValueError, "d_model"),
        (dict(d_model=16, n_heads=0), ValueError, "n_heads"),
        (dict(d_model=16.0), TypeError, "d_model"),
        (dict(d_model=16, rope="yes"), TypeError, "rope"),
        (dict(d_model=16, ln_eps=0.0), ValueError, "ln_eps"),
    ],
)
def test_bad_configuration(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SessaLayer(**kwargs)


def test_odd_head_dim_ok_without_rope():
    assert SessaLayer(12, n_heads=4, rope=False)(torch.randn(1, 3, 12)).shape == (1, 3, 12)


@pytest.mark.parametrize(
    "x,exc,match",
    [
        (torch.randn(4, 16), ValueError, "3 dimensions"),
        (torch.randn(1, 4, 15), ValueError, "width d_model"),
        (torch.randn(0, 4, 16), ValueError, "empty batch"),
        (torch.ones(1, 4, 16, dtype=torch.long), TypeError, "floating-point"),
        ([[0.0] * 16], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(x, exc, match):
    with pytest.raises(exc, match=match):
        SessaLayer(16, n_heads=2)(x)
