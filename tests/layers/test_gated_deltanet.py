"""The Gated DeltaNet baseline: forward and every gradient against a step-by-step float64 statement of the
gated delta rule, transformers' chunked rule against it across chunk boundaries, the decoding cache, padding,
options, and initial values."""

import pickle

import pytest
import torch
import torch.nn.functional as F

from sessa.layers.gated_deltanet import GatedDeltaNetCache, GatedDeltaNetMixer, gated_deltanet_options
from sessa.models import SessaConfig, SessaLM
from sessa.utils.checks import debug_checks

D = 12


def delta_rule_reference(q, k, v, g, beta):
    """o [B, T, H, dv] of S_t = e^{g_t} S_{t-1} + beta_t k_t (v_t - e^{g_t} S_{t-1}^T k_t)^T, o_t = S_t^T q_t.

    q, k [B, T, H, dk] (already normalised and scaled), v [B, T, H, dv], g, beta [B, T, H]; one token at a time.
    """
    B, T, H, dk = k.shape
    S = q.new_zeros(B, H, dk, v.shape[-1])
    out = []
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None]
        kt, vt, bt = k[:, t], v[:, t], beta[:, t][..., None]
        read = torch.einsum("bhkv,bhk->bhv", S, kt)  # what the state already stores under key k_t
        S = S + torch.einsum("bhk,bhv->bhkv", kt, (vt - read) * bt)
        out.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t]))
    return torch.stack(out, dim=1)


def mixer_reference(m: GatedDeltaNetMixer, a: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The whole mixer from its weights, in the dtype of a: projections, short conv, gates, the rule, norm."""
    gdn, o = m.gdn, m.settings
    H, dk, dv, K = o["num_heads"], o["head_dim"], o["head_v_dim"], o["conv_kernel"]
    if mask is not None:
        a = a * mask[..., None].to(a.dtype)  # padded inputs are zeroed
    B, T, _ = a.shape
    w = lambda p: p.to(a.dtype)  # noqa: E731
    qkvz = (a @ w(gdn.in_proj_qkvz.weight).T).view(B, T, H, 2 * dk + 2 * dv)  # per head: q, k, v, z
    q, k, v, z = qkvz.split([dk, dk, dv, dv], dim=-1)
    b, g_in = (a @ w(gdn.in_proj_ba.weight).T).view(B, T, H, 2).unbind(-1)  # per head: b, a
    x = torch.cat([q.reshape(B, T, -1), k.reshape(B, T, -1), v.reshape(B, T, -1)], dim=-1)
    conv_w = w(gdn.conv1d.weight)[:, 0]  # [C, K], causal: output t reads inputs t-K+1 .. t
    xp = F.pad(x, (0, 0, K - 1, 0))
    x = F.silu(sum(xp[:, i:i + T] * conv_w[:, i] for i in range(K)))
    q, k, v = x.split([H * dk, H * dk, H * dv], dim=-1)
    q, k, v = q.view(B, T, H, dk), k.view(B, T, H, dk), v.view(B, T, H, dv)
    q = q * torch.rsqrt(q.square().sum(-1, keepdim=True) + 1e-6) / dk**0.5  # l2norm with FLA's eps, then 1/sqrt(dk)
    k = k * torch.rsqrt(k.square().sum(-1, keepdim=True) + 1e-6)
    beta = torch.sigmoid(b)
    g = -w(gdn.A_log).exp() * F.softplus(g_in + w(gdn.dt_bias))
    out = delta_rule_reference(q, k, v, g, beta)
    out = out * torch.rsqrt(out.square().mean(-1, keepdim=True) + gdn.norm.variance_epsilon)
    out = w(gdn.norm.weight) * out * F.silu(z)
    return out.reshape(B, T, H * dv) @ w(gdn.out_proj.weight).T


def make(options=None, d_model=D, seed=0) -> GatedDeltaNetMixer:
    torch.manual_seed(seed)
    m = GatedDeltaNetMixer(d_model, options)
    with torch.no_grad():  # A_log, dt_bias away from their init so the decay is not trivially ~0 or ~1
        m.gdn.A_log.uniform_(-3.0, 0.5)
        m.gdn.dt_bias.uniform_(-1.0, 1.0)
        m.gdn.norm.weight.uniform_(0.5, 1.5)
    return m


# T crosses the 16-token chunks of the default and transformers' 64-token ones, and is short or odd
@pytest.mark.parametrize("T", [1, 5, 64, 65, 130])
@pytest.mark.parametrize("options", [{}, {"num_heads": 3, "head_dim": 5, "head_v_dim": 7, "conv_kernel": 2},
                                     {"chunk_size": 64}])
def test_forward_and_all_gradients_match_the_float64_statement(T, options):
    m = make(options).double()
    a = torch.randn(2, T, D, dtype=torch.float64, requires_grad=True)
    ref_m = make(options).double()
    ref_m.load_state_dict(m.state_dict())
    a_ref = a.detach().clone().requires_grad_(True)
    s, ref = m(a), mixer_reference(ref_m, a_ref)
    # the transformers rule computes in float32 whatever the input dtype: float32 tolerances
    torch.testing.assert_close(s, ref, rtol=1e-4, atol=1e-5)
    w = torch.randn_like(ref)
    (s * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, a_ref.grad, rtol=1e-4, atol=1e-5)
    ref_params = dict(ref_m.named_parameters())
    for name, p in m.named_parameters():
        assert p.grad is not None and ref_params[name].grad is not None, name
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-4, atol=1e-5, msg=name)


def test_chunk_size_reaches_the_chunked_rule(monkeypatch):
    from transformers.models.qwen3_next import modeling_qwen3_next as hf

    seen, rule = [], hf.torch_chunk_gated_delta_rule

    def spy(*args, **kwargs):
        seen.append(kwargs.get("chunk_size"))
        return rule(*args, **kwargs)

    monkeypatch.setattr(hf, "torch_chunk_gated_delta_rule", spy)
    a = torch.randn(1, 9, D, dtype=torch.float64)
    small, large = make({"chunk_size": 4}).double(), make({"chunk_size": 64}).double()
    torch.testing.assert_close(small(a), large(a), rtol=1e-5, atol=1e-6)
    assert seen == [4, 64]


@pytest.mark.parametrize("T, chunk", [(1, 4), (7, 4), (8, 4), (9, 4), (33, 8), (20, 64)])
def test_transformers_chunked_rule_equals_the_step_by_step_statement(T, chunk):
    """The rule the mixer relies on, at small chunks: every boundary case of the chunked scan."""
    from transformers.models.qwen3_next.modeling_qwen3_next import torch_chunk_gated_delta_rule

    torch.manual_seed(T)
    B, H, dk, dv = 2, 2, 3, 5
    q, k = torch.randn(B, T, H, dk, dtype=torch.float64), torch.randn(B, T, H, dk, dtype=torch.float64)
    v = torch.randn(B, T, H, dv, dtype=torch.float64)
    g = -torch.rand(B, T, H, dtype=torch.float64) * 2
    beta = torch.rand(B, T, H, dtype=torch.float64)
    out, state = torch_chunk_gated_delta_rule(q, k, v, g=g, beta=beta, chunk_size=chunk,
                                              use_qk_l2norm_in_kernel=True, output_final_state=True)
    l2 = lambda x: x * torch.rsqrt(x.square().sum(-1, keepdim=True) + 1e-6)  # noqa: E731  (FLA's l2norm)
    qn, kn = l2(q) / dk**0.5, l2(k)
    ref = delta_rule_reference(qn, kn, v, g, beta)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert state.shape == (B, H, dk, dv)


def test_lm_prefill_prefill_decode_equals_full_forward():
    torch.manual_seed(0)
    lm = SessaLM(SessaConfig(vocab_size=20, d_model=D, n_layers=2, mixer="gated_deltanet")).eval()
    ids = torch.randint(0, 20, (2, 11))
    with torch.no_grad():
        full = lm(ids).logits
        out = lm(ids[:, :4], use_cache=True)
        parts = [out.logits]
        out = lm(ids[:, 4:9], cache=out.cache)  # a second chunk continues the cached state
        parts.append(out.logits)
        for t in range(9, 11):  # then one token at a time (the recurrent rule)
            out = lm(ids[:, t:t + 1], cache=out.cache)
            parts.append(out.logits)
    assert out.cache.seq_len == 11 and all(isinstance(c, GatedDeltaNetCache) for c in out.cache.layers)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_left_and_right_padding_are_exact_and_gaps_refused():
    m = make().eval()
    a = torch.randn(1, 6, D)
    with torch.no_grad():
        alone = m(a)
        left = m(torch.cat([torch.randn(1, 3, D), a], dim=1), attention_mask=torch.tensor([[0] * 3 + [1] * 6]))
        right = m(torch.cat([a, torch.randn(1, 2, D)], dim=1), attention_mask=torch.tensor([[1] * 6 + [0] * 2]))
    torch.testing.assert_close(left[:, 3:], alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(right[:, :6], alone, rtol=1e-5, atol=1e-6)
    gap = torch.tensor([[1, 1, 0, 1, 1]])
    m(torch.randn(1, 5, D), attention_mask=gap)  # outside debug mode the mask is not read back: no check
    with debug_checks(), pytest.raises(ValueError, match="contiguous.*first at index \\(0, 3\\)"):
        m(torch.randn(1, 5, D), attention_mask=gap)
    _, cache = m(a, use_cache=True, attention_mask=torch.tensor([[1] * 5 + [0]]))  # right-padded prefill
    with debug_checks(), pytest.raises(ValueError, match="contiguous"):
        m(torch.randn(1, 1, D), cache=cache)  # a new token after the padding would open a gap
    with debug_checks():  # left padding, then real tokens, then right padding: fine
        m(torch.randn(2, 6, D), attention_mask=torch.tensor([[0, 1, 1, 1, 0, 0], [1] * 6]))


def test_cache_checks_and_beam_reorder():
    m = make().eval()
    a = torch.randn(3, 5, D)
    with torch.no_grad():
        _, cache = m(a, use_cache=True)
        picked = cache.index_select(torch.tensor([2, 0]))
        step = torch.randn(3, 1, D)
        full, _ = m(step, cache=cache)
        sub, _ = m(step[[2, 0]], cache=picked)
    torch.testing.assert_close(sub, full[[2, 0]])
    with pytest.raises(ValueError, match="batch size"):
        m(torch.randn(2, 1, D), cache=cache)
    with pytest.raises(ValueError, match="head_v_dim"):
        make({"head_v_dim": 5})(torch.randn(3, 1, D), cache=cache)
    with pytest.raises(TypeError, match="GatedDeltaNetCache"):
        m(torch.randn(3, 1, D), cache=object())


@pytest.mark.parametrize(
    "options, needle",
    [({"num_heads": 5}, "num_heads"), ({"head_dim": 0}, "head_dim"), ({"head_v_dim": 2.5}, "head_v_dim"),
     ({"conv_kernel": True}, "conv_kernel"), ({"bogus": 1}, "bogus")],
)
def test_bad_options_are_named(options, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        gated_deltanet_options(D, options)


def test_defaults_follow_the_width():
    assert gated_deltanet_options(64, {}) == {"num_heads": 2, "head_dim": 32, "head_v_dim": 64, "conv_kernel": 4,
                                              "chunk_size": 16}
    assert gated_deltanet_options(64, {"num_heads": 3, "head_dim": 16})["head_v_dim"] == 32  # no need to divide
    m = GatedDeltaNetMixer(64)
    assert m.gdn.num_k_heads == m.gdn.num_v_heads == 2 and (m.gdn.head_k_dim, m.gdn.head_v_dim) == (32, 64)


def test_the_module_is_transformers_own_with_a_reset_and_pickles():
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet

    m = make()
    assert isinstance(m.gdn, Qwen3NextGatedDeltaNet)
    assert type(m.gdn).forward is Qwen3NextGatedDeltaNet.forward  # nothing of its computation is ours
    m.gdn.reset_parameters()
    assert torch.equal(m.gdn.dt_bias, torch.ones_like(m.gdn.dt_bias))
    A = m.gdn.A_log.exp()
    assert bool(((A >= 0.01 - 1e-6) & (A <= 16 + 1e-5)).all()) and A.unique().numel() == A.numel()
    a = torch.randn(1, 4, D)
    torch.testing.assert_close(pickle.loads(pickle.dumps(m))(a), m(a), rtol=0, atol=0)
