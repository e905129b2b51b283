"""The authors'-API layer (sessa.layers.compat): their signature, names, buffers and cache methods on our layer.

Their interface is stated here in our own words: the constructor's parameters in order with defaults, the
state-dict keys their layer saves (parameters; the RoPE frequencies with RoPE; two [max_len, max_len] bool
masks with max_len), and the cache conventions (prefill returns (y, cache); decode_step takes [B, D] or
[B, 1, D] and returns the same shape; the cache is a mapping with "t", "k_f", "v_f", "k_b", "s").
"""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from reference import RefLayer
from torch import nn

from sessa.layers import compat
from sessa.layers.block import GatedBlock
from sessa.layers.compat import convert_reference_state_dict, export_reference_state_dict
from sessa.layers.sessa import SessaLayer, SessaMixer

CONFIGS = [(16, 1, None, True), (16, 4, 2, True), (24, 3, 1, False)]  # D, H, Hkv, rope


def their_keys(H: int, rope: bool, max_len: int | None) -> set[str]:
    """The keys the authors' layer saves, by construction."""
    keys = {"ln.weight", "ln.bias", "W_in.weight", "W_in.bias", "W_out.weight", "W_out.bias", "mixer.gamma_bias"}
    for m in ("q_proj", "k_proj", "v_proj", "proj_fb"):
        keys |= {f"mixer.{m}.weight", f"mixer.{m}.bias"}
    keys.add("mixer.gamma_ctx.weight")
    if H > 1:
        keys.add("mixer.out_proj.weight")
    if rope:
        keys.add("mixer.rope_inv_freq")
    if max_len is not None:
        keys |= {"mixer.causal_mask_f_full", "mixer.causal_mask_fb_full"}
    return keys


def perturbed(layer: nn.Module) -> nn.Module:
    """Non-trivial biases and an input-dependent gamma (defaults start some of them at constants)."""
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return layer


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_signature_is_theirs():
    want = [
        ("D", inspect.Parameter.empty), ("n_heads", 1), ("n_kv_heads", None), ("max_len", None),
        ("ln_eps", 1e-5), ("use_flash", False), ("use_forward_rope", True), ("gamma_max", 0.999),
    ]
    got = [(p.name, p.default) for p in inspect.signature(compat.SessaLayer).parameters.values()]
    assert got == want
    required = inspect.Parameter.empty
    methods = {
        "init_cache": [("batch_size", required), ("device", None), ("dtype", None), ("max_len", None)],
        "prefill": [("x", required), ("cache", required)],
        "decode_step": [("x_t", required), ("cache", required), ("use_flash_decode", False)],
    }
    for name, params in methods.items():
        sig = inspect.signature(getattr(compat.SessaLayer, name))
        assert [(p.name, p.default) for p in sig.parameters.values()][1:] == params, name
    layer = compat.SessaLayer(64, 4, 2, 1024)  # positional max_len, as in their code
    assert layer.max_len == 1024 and layer.mixer.n_kv_heads == 2 and isinstance(layer, SessaLayer)


@pytest.mark.parametrize("D,H,Hkv,rope", CONFIGS)
@pytest.mark.parametrize("max_len", [None, 32])
def test_their_names_buffers_and_strict_round_trip(D, H, Hkv, rope, max_len):
    layer = compat.SessaLayer(D, H, Hkv, max_len, use_forward_rope=rope)
    sd = layer.state_dict()
    assert set(sd) == their_keys(H, rope, max_len)
    assert {n for n, _ in layer.named_parameters()} == their_keys(H, False, None) - {"mixer.rope_inv_freq"}
    assert layer.ln is layer.norm and layer.W_in is layer.in_proj and layer.W_out is layer.out_proj
    assert layer.mixer.proj_fb is layer.mixer.fb_proj and layer.mixer.gamma_ctx is layer.mixer.gamma_proj
    if rope:
        d = D // H
        want = torch.tensor([10000.0 ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float32)
        torch.testing.assert_close(sd["mixer.rope_inv_freq"], want, rtol=1e-6, atol=0)
    if max_len is not None:
        i, j = torch.meshgrid(torch.arange(max_len), torch.arange(max_len), indexing="ij")
        assert torch.equal(sd["mixer.causal_mask_f_full"], j > i)
        assert torch.equal(sd["mixer.causal_mask_fb_full"], j >= i)
    other = perturbed(compat.SessaLayer(D, H, Hkv, max_len, use_forward_rope=rope))
    layer.load_state_dict(other.state_dict())  # strict: the full key set, buffers included
    for name, p in other.named_parameters():
        assert torch.equal(layer.get_parameter(name), p), name


def test_masks_of_any_size_are_accepted_and_head_width_is_checked():
    src = compat.SessaLayer(16, 2, max_len=8).state_dict()
    compat.SessaLayer(16, 2, max_len=64).load_state_dict(src)  # masks are rebuilt, never read
    compat.SessaLayer(16, 2).load_state_dict(src)
    with pytest.raises(RuntimeError, match="rope_inv_freq"):  # a 4-head checkpoint into a 2-head layer
        compat.SessaLayer(16, 2).load_state_dict(compat.SessaLayer(16, 4).state_dict())


@pytest.mark.parametrize("D,H,Hkv,rope", CONFIGS)
def test_same_seed_same_weights_as_our_layer(D, H, Hkv, rope):
    # our SessaLayer draws the authors' weights (tests/layers/test_init_order.py); the drop-in draws the same
    torch.manual_seed(11)
    theirs = compat.SessaLayer(D, H, Hkv, 64, use_forward_rope=rope)
    torch.manual_seed(11)
    ours = SessaLayer(D, H, Hkv, rope=rope)
    mine = convert_reference_state_dict(theirs.state_dict())
    assert set(mine) == set(ours.state_dict())
    for name, p in ours.state_dict().items():
        assert torch.equal(mine[name], p), name


@pytest.mark.parametrize("D,H,Hkv,rope", CONFIGS)
def test_outputs_equal_our_layer(D, H, Hkv, rope):
    theirs = perturbed(compat.SessaLayer(D, H, Hkv, 300, use_forward_rope=rope))
    ours = SessaLayer(D, H, Hkv, rope=rope)
    ours.load_state_dict(convert_reference_state_dict(theirs.state_dict()))
    x = torch.randn(2, 300, D)
    assert torch.equal(theirs(x), ours(x))


@pytest.mark.parametrize("D,H,Hkv,rope", CONFIGS)
def test_float64_matches_the_independent_statement(D, H, Hkv, rope):
    ref = perturbed(RefLayer(D, H, Hkv, rope=rope).double())
    layer = compat.SessaLayer(D, H, Hkv, 64, use_forward_rope=rope).double()
    sd = ref.state_dict()
    if not rope:
        sd.pop("mixer.rope_inv_freq")  # the statement keeps it either way; their layer only with RoPE
    layer.load_state_dict(sd)
    x = torch.randn(2, 40, D, dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)
        assert rel_err(layer(x), want) <= 1e-12
        y, cache = layer.prefill(x[:, :17], layer.init_cache(2))
        steps = [y]
        for t in range(17, 40):
            y_t, cache = layer.decode_step(x[:, t], cache)
            steps.append(y_t[:, None])
    assert rel_err(torch.cat(steps, 1), want) <= 1e-12


@pytest.mark.parametrize("D,H,Hkv,rope", CONFIGS)
def test_prefill_then_decode_equals_full_forward(D, H, Hkv, rope):
    layer = perturbed(compat.SessaLayer(D, H, Hkv, max_len=24, use_forward_rope=rope))
    x = torch.randn(3, 24, D)
    with torch.no_grad():
        full = layer(x)
        cache = layer.init_cache(3)
        assert cache["t"] == 0 and set(cache) == {"t", "k_f", "v_f", "k_b", "s"}
        y, cache2 = layer.prefill(x[:, :9], cache)
        assert cache2 is cache and cache["t"] == 9 and y.shape == (3, 9, D)
        outs = [y]
        for t in range(9, 24):
            x_t = x[:, t : t + 1] if t % 2 else x[:, t]  # [B, 1, D] and [B, D] both work
            y_t, cache = layer.decode_step(x_t, cache)
            assert y_t.shape == x_t.shape
            outs.append(y_t.reshape(3, 1, D))
        a = F.gelu(layer.W_in(layer.ln(x)).chunk(2, dim=-1)[0])
        s = layer.mixer(a)
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-5, atol=1e-5)
    Hkv = Hkv or H
    assert cache["t"] == 24 and cache["s"].shape == (3, 24, D) and cache["k_b"].shape == (3, 24, D)
    assert cache["k_f"].shape == cache["v_f"].shape == (3, 24, Hkv, D // H)
    torch.testing.assert_close(cache["s"], s, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache["k_b"], layer.mixer.proj_fb(a)[..., D:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache["v_f"], layer.mixer.v_proj(a).view(3, 24, Hkv, D // H), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="full"):
        layer.decode_step(x[:, 0], cache)


def test_capacity_and_lengths():
    layer = compat.SessaLayer(16, 2)
    with pytest.raises(ValueError, match="max_len must be given"):
        layer.init_cache(1)
    cache = layer.init_cache(1, max_len=4)
    with pytest.raises(ValueError, match="exceeds max_len = 4"):
        layer.prefill(torch.randn(1, 5, 16), cache)
    y, cache = layer.prefill(torch.randn(1, 0, 16), cache)  # empty prefill: nothing cached
    assert y.shape == (1, 0, 16) and cache["t"] == 0
    y, cache = layer.prefill(torch.randn(1, 3, 16), cache)
    y, cache = layer.prefill(torch.randn(1, 1, 16), cache)  # continuing a cache is allowed
    assert cache["t"] == 4
    bounded = compat.SessaLayer(16, 2, max_len=8)
    assert bounded(torch.randn(1, 8, 16)).shape == (1, 8, 16)
    with pytest.raises(ValueError, match="more than max_len = 8"):
        bounded(torch.randn(1, 9, 16))
    c = bounded.init_cache(2, dtype=torch.float64)
    assert c.max_len == 8 and c["k_f"].dtype == torch.float64
    with pytest.raises(KeyError):
        c["nope"]


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: compat.SessaLayer(16, max_len=0), ValueError, "max_len"),
        (lambda: compat.SessaLayer(0), ValueError, "D"),
        (lambda: compat.SessaLayer(16, use_flash=1), TypeError, "use_flash"),
        (lambda: compat.SessaLayer(16, use_forward_rope="no"), TypeError, "use_forward_rope"),
        (lambda: compat.SessaLayer(16, gamma_max=1.5), ValueError, "gamma_max"),
        (lambda: compat.SessaLayer(16, 2, max_len=4).prefill(torch.randn(1, 2, 16), {"t": 0}), TypeError, "cache"),
        (lambda: compat.SessaLayer(16, max_len=4).init_cache(0), ValueError, "batch_size"),
        (lambda: compat.SessaLayer(16, max_len=4).init_cache(1, dtype=torch.long), TypeError, "dtype"),
    ],
)
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_bad_decode_inputs():
    layer = compat.SessaLayer(16, 2, max_len=8)
    cache = layer.init_cache(2)
    with pytest.raises(ValueError, match="x_t must be"):
        layer.decode_step(torch.randn(2, 2, 16), cache)
    with pytest.raises(TypeError, match="use_flash_decode"):
        layer.decode_step(torch.randn(2, 16), cache, use_flash_decode="yes")
    with pytest.raises(ValueError, match="batch size"):
        layer.decode_step(torch.randn(3, 16), cache)


@pytest.mark.parametrize("T", [1, 4])
def test_every_parameter_gets_a_gradient(T):
    layer = compat.SessaLayer(16, 2, 1, 8)
    layer(torch.randn(2, T, 16)).sum().backward()
    assert [n for n, p in layer.named_parameters() if p.grad is None] == []


class TinyLM(nn.Module):
    """A model trained with our modules: embedding, our layers, a final norm."""

    def __init__(self, D: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, D)
        self.layers = nn.ModuleList([SessaLayer(D, 2), GatedBlock(D, lambda: SessaMixer(D, 4, 2))])
        self.norm = nn.LayerNorm(D)


def test_export_round_trip_and_load_into_their_layout():
    model = perturbed(TinyLM())
    out = export_reference_state_dict(model, max_len=12)
    assert {"embed.weight", "norm.weight", "norm.bias"} <= set(out)  # outside the layers: kept
    assert {k[len("layers.0.") :] for k in out if k.startswith("layers.0.")} == their_keys(2, True, 12)
    assert {k[len("layers.1.") :] for k in out if k.startswith("layers.1.")} == their_keys(4, True, 12)
    back = convert_reference_state_dict(out, strict=False)
    assert set(back) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(back[k], v), k
    with pytest.raises(ValueError, match="unknown key"):
        convert_reference_state_dict(out)  # strict: the embedding is not a layer key
    # each exported layer loads, strictly, into the drop-in built as they would build it
    x = torch.randn(2, 12, 16)
    for i, H in enumerate((2, 4)):
        theirs = compat.SessaLayer(16, H, 2 if H == 4 else None, 12)
        theirs.load_state_dict({k[len(f"layers.{i}.") :]: v for k, v in out.items() if k.startswith(f"layers.{i}.")})
        with torch.no_grad():
            assert torch.equal(theirs(x), model.layers[i](x))


def test_export_of_the_drop_in_is_its_state_dict():
    layer = compat.SessaLayer(16, 2, max_len=6)
    sd, out = layer.state_dict(), export_reference_state_dict(nn.ModuleList([layer]))
    assert set(out) == {f"0.{k}" for k in sd}


@pytest.mark.parametrize(
    "module,exc,match",
    [
        (SessaLayer(16, 2, feedback=False), ValueError, "feedback=False"),
        (SessaLayer(16, 2, rope_theta=500.0), ValueError, "rope_theta"),
        (nn.Linear(3, 3), ValueError, "holds no Sessa layer"),
        ({"w": torch.zeros(1)}, TypeError, "module must be an nn.Module"),
    ],
)
def test_export_refuses_what_their_layer_cannot_hold(module, exc, match):
    with pytest.raises(exc, match=match):
        export_reference_state_dict(module)


def test_convert_non_strict_and_gamma_vector():
    sd = {"blocks.0.ln.weight": torch.ones(4), "head.weight": torch.zeros(2, 4)}
    sd["mixer.gamma_bias"] = torch.tensor([0.5])  # some checkpoints store it as a 1-vector
    out = convert_reference_state_dict(sd, strict=False)
    assert set(out) == {"blocks.0.norm.weight", "head.weight", "mixer.gamma_bias"}
    assert out["mixer.gamma_bias"].shape == () and math.isclose(out["mixer.gamma_bias"].item(), 0.5)


@pytest.mark.slow
def test_compiles_without_graph_breaks():
    # the authors' names are plain properties over our modules: nothing for torch.compile to break on
    layer = compat.SessaLayer(16, 2, max_len=32)
    x = torch.randn(1, 12, 16, requires_grad=True)
    y = torch.compile(layer, fullgraph=True)(x)
    y.sum().backward()
    torch.testing.assert_close(y, layer(x), rtol=1e-5, atol=1e-6)
    assert all(p.grad is not None for p in layer.parameters())
