"""Causal multi-head self-attention mixer: the paper's Transformer baseline inside the same gated block.

    q = W_q a_bar, k = W_k a_bar, v = W_v a_bar        (RoPE on q, k; GQA: query head h reads kv head h // (H/Hkv))
    s = W_o softmax(q k^T / sqrt(d) + causal mask) v    (W_o only when H > 1, as in Sessa's forward branch)

It is exactly Sessa's forward branch f (docs/equations.md §2) with no feedback loop, so the only difference
between the "attention" and "sessa" models is the mixer's feedback solve (and the width chosen by
`sessa.compare.matching` to equalise parameter counts).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sessa.layers.rope import apply_rope
from sessa.ops.utils import causal_allowed
from sessa.utils.checks import check_float, check_heads, check_hidden, check_mask


class AttentionMixer(nn.Module):
    """s = causal MHA(a_bar) with RoPE and scaled-dot-product attention (SDPA)."""

    # what the mixer table needs (sessa.layers.mixers): forward's extra arguments, mixer_options, matching
    summary: ClassVar[str] = "causal softmax attention (RoPE) in Sessa's gated block: the paper's Transformer"
    accepts: ClassVar[frozenset[str]] = frozenset({"attention_mask"})
    options: ClassVar[dict[str, Any]] = {}
    match_option: ClassVar[str | None] = None

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        n_kv_heads: int | None = None,
        rope: bool = True,
        *,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        n_heads, n_kv_heads, head_dim = check_heads(d_model, n_heads, n_kv_heads, rope)
        self.d_model, self.n_heads, self.n_kv_heads, self.head_dim = d_model, n_heads, n_kv_heads, head_dim
        self.rope = rope
        self.rope_theta = check_float("rope_theta", rope_theta, lo=0.0, lo_open=True)
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, n_kv_heads * head_dim)
        self.v_proj = nn.Linear(d_model, n_kv_heads * head_dim)
        self.build_before_output()
        # one head needs no output projection: the block's W_out follows (same convention as SessaMixer)
        self.o_proj = nn.Linear(d_model, d_model, bias=False) if n_heads > 1 else None

    def build_before_output(self) -> None:
        """Subclass hook: modules created here draw their initial weights after W_v and before W_o."""

    @classmethod
    def from_config(cls, config: Any) -> AttentionMixer:
        """SessaConfig(mixer="attention"): uses d_model, n_heads, n_kv_heads, rope, rope_theta."""
        return cls(config.d_model, config.n_heads, config.n_kv_heads, config.rope, rope_theta=config.rope_theta)

    def forward_qkv(self, a: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q [B, T, H, d], k, v [B, T, Hkv, d], with RoPE applied to q and k at the given positions."""
        B, T, _ = a.shape
        q = self.q_proj(a).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(a).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.v_proj(a).view(B, T, self.n_kv_heads, self.head_dim)
        if self.rope:
            q, k = apply_rope(q, positions, self.rope_theta), apply_rope(k, positions, self.rope_theta)
        return q, k, v

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
        causal: bool = True,
    ) -> torch.Tensor:
        """f = W_o softmax(q k^T / sqrt(d)) v over [B, T, H, d] tensors (causal: no mask and causal)."""
        f = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            attn_mask=mask, is_causal=mask is None and causal, enable_gqa=self.n_kv_heads != self.n_heads,
        )
        f = f.transpose(1, 2).reshape(q.shape[0], q.shape[1], self.d_model)
        return self.o_proj(f) if self.o_proj is not None else f

    def forward(self, a: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """a_bar [B, T, D] -> s [B, T, D]; attention_mask [B, T] (1 = real token) hides padded keys."""
        check_hidden("a", a, self.d_model, self.q_proj.weight.dtype)
        B, T, _ = a.shape
        q, k, v = self.forward_qkv(a, torch.arange(T, device=a.device))
        mask = None
        if attention_mask is not None:  # causal and both real; a padded query keeps its own key (never empty)
            m = check_mask("attention_mask", attention_mask, (B, T), "[B, T]")
            mask = causal_allowed(T, 0, m, strict=False, device=a.device)[:, None]
        return self.attend(q, k, v, mask)

