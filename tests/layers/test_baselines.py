"""Every mixer of the table (Sessa and the baselines): shapes, causality, gradients, masks, the LM, checks.

The generic tests run over sessa.layers.mixers.MIXERS with each mixer's default options, so a new entry in
the table is tested without editing this file.
"""

import math

import pytest
import torch

from sessa.layers.attention import AttentionMixer
from sessa.layers.mamba2 import Mamba2Mixer, mamba2_options
from sessa.layers.mixers import MIXERS, build_mixer
from sessa.layers.rope import apply_rope
from sessa.layers.sessa import SessaMixer
from sessa.models import SessaConfig, SessaLM

D = 32
NO_CACHE = [name for name, cls in MIXERS.items() if "cache" not in cls.accepts]


def config(kind: str, **kw) -> SessaConfig:
    return SessaConfig(**{"vocab_size": 20, "d_model": D, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
                          "mixer": kind, **kw})


def make(kind: str) -> torch.nn.Module:
    """The mixer `kind` of the table with its default options."""
    return build_mixer(config(kind))


@pytest.mark.parametrize("kind", list(MIXERS))
def test_shape_and_dtype(kind):
    m = make(kind)
    a = torch.randn(3, 11, D)
    s = m(a)
    assert s.shape == a.shape and s.dtype == a.dtype and torch.isfinite(s).all()


@pytest.mark.parametrize("kind", list(MIXERS))
def test_causal(kind):
    """Output at t does not depend on inputs after t."""
    m = make(kind).eval()
    a = torch.randn(2, 13, D)
    t0 = 6
    b = a.clone()
    b[:, t0 + 1:] = torch.randn_like(b[:, t0 + 1:]) * 5
    sa, sb = m(a), m(b)
    torch.testing.assert_close(sa[:, : t0 + 1], sb[:, : t0 + 1], rtol=1e-5, atol=1e-5)
    assert (sa[:, t0 + 1:] - sb[:, t0 + 1:]).abs().max() > 1e-3  # later outputs do see the change


def test_mamba2_causal_across_chunks():
    """T = 13 spans several Mamba2 chunks of 4."""
    m = Mamba2Mixer(D, {"head_dim": 8, "state_size": 8, "chunk_size": 4}).eval()
    a = torch.randn(2, 13, D)
    b = a.clone()
    b[:, 7:] = torch.randn_like(b[:, 7:]) * 5
    torch.testing.assert_close(m(a)[:, :7], m(b)[:, :7], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(MIXERS))
def test_gradients_flow(kind):
    m = make(kind)
    a = torch.randn(2, 9, D, requires_grad=True)
    m(a).square().mean().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_attention_equals_sessa_forward_branch():
    """The attention baseline is Sessa's f branch: same weights give s_attention == s_sessa(feedback off)."""
    for heads, kv in ((1, 1), (4, 2)):
        sessa = SessaMixer(D, heads, kv, feedback=False)
        att = AttentionMixer(D, heads, kv)
        state = {k: v for k, v in sessa.state_dict().items() if not k.startswith(("fb_proj", "gamma"))}
        att.load_state_dict(state)
        a = torch.randn(2, 10, D)
        torch.testing.assert_close(att(a), sessa(a))


def test_attention_matches_explicit_softmax_with_gqa_and_rope():
    torch.manual_seed(1)
    m = AttentionMixer(D, n_heads=4, n_kv_heads=2)
    a = torch.randn(2, 7, D, dtype=torch.float64)
    m = m.double()
    B, T, H, d = 2, 7, 4, D // 4
    q = m.q_proj(a).view(B, T, H, d)
    k = m.k_proj(a).view(B, T, 2, d)
    v = m.v_proj(a).view(B, T, 2, d)
    pos = torch.arange(T)
    q, k = apply_rope(q, pos), apply_rope(k, pos)
    k, v = k.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2)  # query head h reads kv head h // 2
    logits = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(d)
    logits = logits.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    ref = torch.einsum("bhts,bshd->bthd", logits.softmax(-1), v).reshape(B, T, D)
    torch.testing.assert_close(m(a), m.o_proj(ref))


@pytest.mark.parametrize("kind", [name for name, cls in MIXERS.items() if "attention_mask" in cls.accepts])
def test_attention_mask_hides_right_padding(kind):
    """Real tokens of a right-padded sequence get the outputs they get without padding."""
    m = make(kind).eval()
    a = torch.randn(1, 6, D)
    padded = torch.cat([a, torch.randn(1, 3, D)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    torch.testing.assert_close(m(padded, attention_mask=mask)[:, :6], m(a), rtol=1e-5, atol=1e-5)


def test_mamba2_is_the_transformers_module():
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer as HFMamba2Mixer

    m = Mamba2Mixer(D, {"expand": 2, "head_dim": 16})
    assert isinstance(m.mamba, HFMamba2Mixer)
    assert m.mamba.num_heads == 2 * D // 16 and m.mamba.ssm_state_size == 16


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_table_and_lm(mixer):
    cfg = config(mixer)
    assert type(build_mixer(cfg)) is MIXERS[mixer]
    lm = SessaLM(cfg)
    assert all(type(layer.mixer) is MIXERS[mixer] for layer in lm.model.layers)
    ids = torch.randint(0, 20, (2, 9))
    out = lm(ids, labels=ids)
    assert out.logits.shape == (2, 9, 20) and torch.isfinite(out.loss)
    out.loss.backward()
    assert lm.model.embed_tokens.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_unknown_mixer_option_is_named(mixer):
    """mixer_options are checked against the mixer's own options: a typo is an error, never ignored."""
    cls = MIXERS[mixer]
    with pytest.raises(ValueError, match=r"mixer_options\['bogus'\].*allowed"):
        config(mixer, mixer_options={"bogus": 1})
    config(mixer, mixer_options=dict(cls.options))  # its own defaults are accepted


def test_unknown_mixer_is_named_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'mamba2'"):
        SessaConfig(mixer="mamba3")


@pytest.mark.parametrize(
    "options, needle",
    [({"bogus": 1}, "bogus"), ({"head_dim": 7}, "head_dim"), ({"n_groups": 3}, "n_groups"),
     ({"state_size": 0}, "state_size"), ({"expand": 1.5}, "expand")],
)
def test_mamba2_bad_options(options, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        mamba2_options(D, options)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="n_heads"):
        AttentionMixer(D, n_heads=5)
    with pytest.raises(ValueError, match="n_kv_heads"):
        AttentionMixer(D, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="mixer_options"):
        SessaConfig(d_model=D, mixer="attention", mixer_options={"x": 1})
    with pytest.raises(ValueError, match="mixer_options"):
        SessaConfig(d_model=D, mixer="sessa", mixer_options={"state_size": 1})  # no longer silently ignored
    m = AttentionMixer(D, 2)
    with pytest.raises(ValueError, match="d_model"):
        m(torch.randn(1, 4, D + 2))
    with pytest.raises(ValueError, match="attention_mask"):
        m(torch.randn(1, 4, D), attention_mask=torch.ones(1, 5))
    with pytest.raises(TypeError, match="a must"):
        make("mamba2")(torch.randint(0, 3, (1, 4, D)))


@pytest.mark.parametrize("mixer", NO_CACHE)
def test_decoding_cache_is_refused_by_name(mixer):
    lm = SessaLM(config(mixer, n_layers=1))
    with pytest.raises(ValueError, match="Mixer"):
        lm(torch.randint(0, 20, (1, 4)), use_cache=True)
