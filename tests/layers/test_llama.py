"""The Llama-style baseline: its block against an explicit float64 statement (forward and every gradient),
the language model it builds (block, final norm, parameter count) and its options."""

import math

import pytest
import torch
import torch.nn.functional as F

from sessa.layers.llama import LlamaAttentionMixer, LlamaBlock, default_mlp_hidden, llama_options
from sessa.layers.rope import apply_rope
from sessa.models import SessaConfig, SessaLM

D = 16


def block_reference(blk: LlamaBlock, x: torch.Tensor) -> torch.Tensor:
    """h = x + W_o softmax(causal q k^T / sqrt(d)) v of RMSNorm(x);  y = h + W_down(SiLU(W_gate n) * W_up n)."""
    att, mlp = blk.mixer, blk.mlp
    B, T, _ = x.shape
    H, Hkv, d = att.n_heads, att.n_kv_heads, att.head_dim

    def rms(t, norm):
        return t / torch.sqrt(t.square().mean(-1, keepdim=True) + norm.eps) * norm.weight

    n = rms(x, blk.attn_norm)
    q = F.linear(n, att.q_proj.weight, att.q_proj.bias).view(B, T, H, d)
    k = F.linear(n, att.k_proj.weight, att.k_proj.bias).view(B, T, Hkv, d)
    v = F.linear(n, att.v_proj.weight, att.v_proj.bias).view(B, T, Hkv, d)
    pos = torch.arange(T)
    q, k = apply_rope(q, pos), apply_rope(k, pos)
    k, v = k.repeat_interleave(H // Hkv, dim=2), v.repeat_interleave(H // Hkv, dim=2)
    logits = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(d)
    logits = logits.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    o = torch.einsum("bhts,bshd->bthd", logits.softmax(-1), v).reshape(B, T, D)
    h = x + F.linear(o, att.o_proj.weight)
    m = rms(h, blk.mlp_norm)
    return h + F.linear(F.silu(F.linear(m, mlp.gate_proj.weight)) * F.linear(m, mlp.up_proj.weight),
                        mlp.down_proj.weight)


@pytest.mark.parametrize("heads, kv", [(1, 1), (4, 2)])
@pytest.mark.parametrize("T", [1, 7])
def test_block_forward_and_all_gradients_match_the_statement(heads, kv, T):
    torch.manual_seed(heads + T)
    blk = LlamaBlock(D, LlamaAttentionMixer(D, heads, kv), mlp_hidden=24).double()
    with torch.no_grad():  # norms away from 1 so their weights are exercised
        blk.attn_norm.weight.uniform_(0.5, 1.5)
        blk.mlp_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, T, D, dtype=torch.float64, requires_grad=True)
    y = blk(x)
    x_ref = x.detach().clone().requires_grad_(True)
    params = dict(blk.named_parameters())
    ref = block_reference(blk, x_ref)
    torch.testing.assert_close(y, ref)
    w = torch.randn_like(ref)
    grads_model = torch.autograd.grad((y * w).sum(), [x, *params.values()])
    grads_ref = torch.autograd.grad((ref * w).sum(), [x_ref, *params.values()])
    for name, gm, gr in zip(["x", *params], grads_model, grads_ref, strict=True):
        if T > 1:  # one token attends only to itself: q and k get no gradient
            assert gm.abs().sum() > 0, name
        torch.testing.assert_close(gm, gr, msg=name)


def test_lm_is_built_of_llama_blocks_with_an_rmsnorm_head():
    cfg = SessaConfig(vocab_size=30, d_model=D, n_layers=3, mixer="llama")
    lm = SessaLM(cfg)
    assert all(type(layer) is LlamaBlock for layer in lm.model.layers)
    assert type(lm.model.norm) is torch.nn.RMSNorm
    assert all(layer.mixer.o_proj is not None for layer in lm.model.layers)  # W_o even with one head
    hidden = default_mlp_hidden(D)
    # per block: 2 RMSNorms, q/k/v with biases, W_o, SwiGLU; plus the (tied) embedding and the final RMSNorm
    per_block = 2 * D + 3 * (D * D + D) + D * D + 3 * D * hidden
    assert lm.num_parameters() == 30 * D + 3 * per_block + D


def test_default_mlp_width_is_llamas_rule_and_options_are_checked():
    assert default_mlp_hidden(768) == 2048 and default_mlp_hidden(64) == 176 and default_mlp_hidden(16) == 48
    assert llama_options(64, {}) == {"mlp_hidden": 176}
    assert llama_options(64, {"mlp_hidden": 100}) == {"mlp_hidden": 100}
    lm = SessaLM(SessaConfig(vocab_size=30, d_model=D, n_layers=1, mixer="llama", mixer_options={"mlp_hidden": 40}))
    assert lm.model.layers[0].mlp.up_proj.out_features == 40
    for bad, err in (({"mlp_hidden": 0}, ValueError), ({"mlp_hidden": 2.0}, TypeError), ({"mlp": 8}, ValueError)):
        with pytest.raises(err, match="mlp"):
            SessaConfig(d_model=D, mixer="llama", mixer_options=bad)
