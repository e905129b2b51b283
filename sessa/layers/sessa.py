"""The Sessa mixer and layer (SESSA.md sections 1-2).

    f        = causal multi-head softmax attention of a_bar           (the forward branch)
    s        = (I - diag(gamma) alpha_fb)^{-1} f                      (attention inside the feedback loop)
    alpha_fb = strictly causal single-head softmax of (q_b . k_b) / sqrt(D)
    gamma_t  = gamma_max * tanh(b_gamma + w_gamma . a_bar_t)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sessa.layers.block import GatedBlock
from sessa.layers.checks import check_gamma_max, check_heads, check_positive_float
from sessa.layers.rope import apply_rope
from sessa.ops import DEFAULT_CHUNK_SIZE, feedback_solve


class SessaMixer(nn.Module):
    """s_t = f_t + gamma_t * sum_{j<t} alpha_fb[t, j] s_j, with f = causal MHA(a_bar)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        n_kv_heads: int | None = None,
        gamma_max: float = 0.999,
        rope: bool = True,
        *,
        rope_theta: float = 10000.0,
        feedback: bool = True,
        impl: str = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        n_heads, n_kv_heads, head_dim = check_heads(d_model, n_heads, n_kv_heads, rope)
        self.d_model, self.n_heads, self.n_kv_heads, self.head_dim = d_model, n_heads, n_kv_heads, head_dim
        self.gamma_max = check_gamma_max(gamma_max)
        self.rope = rope
        self.rope_theta = check_positive_float("rope_theta", rope_theta)
        if not isinstance(feedback, bool):
            raise TypeError(f"feedback must be a bool, got {feedback!r}")
        self.feedback = feedback
        self.impl, self.chunk_size = impl, chunk_size
        # forward branch
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, n_kv_heads * head_dim)
        self.v_proj = nn.Linear(d_model, n_kv_heads * head_dim)
        self.o_proj = nn.Linear(d_model, d_model, bias=False) if n_heads > 1 else None
        # feedback branch: one head of full width D, no RoPE; rows [0, D) give q_b, [D, 2D) give k_b
        self.fb_proj = nn.Linear(d_model, 2 * d_model)
        self.gamma_bias = nn.Parameter(torch.tensor(1.0))
        self.gamma_proj = nn.Linear(d_model, 1, bias=False)

    def forward_qkv(self, a: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q [B, T, H, d], k, v [B, T, Hkv, d], with RoPE applied to q and k at the given positions."""
        B, T, _ = a.shape
        q = self.q_proj(a).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(a).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.v_proj(a).view(B, T, self.n_kv_heads, self.head_dim)
        if self.rope:
            q, k = apply_rope(q, positions, self.rope_theta), apply_rope(k, positions, self.rope_theta)
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None):
        """f = W_o softmax(q k^T / sqrt(d)) v over [B, T, H, d] tensors (causal when mask is None)."""
        f = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            is_causal=mask is None,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )
        f = f.transpose(1, 2).reshape(q.shape[0], q.shape[1], self.d_model)
        return self.o_proj(f) if self.o_proj is not None else f

    def feedback_inputs(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q_b, k_b [B, T, 1, D] and gamma [B, T, 1], |gamma| <= gamma_max."""
        q_b, k_b = self.fb_proj(a).unsqueeze(2).chunk(2, dim=-1)
        gamma = self.gamma_max * torch.tanh(self.gamma_bias + self.gamma_proj(a))
        return q_b, k_b, gamma

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """a_bar: [B, T, D] -> s: [B, T, D]."""
        T = a.shape[1]
        positions = torch.arange(T, device=a.device)
        f = self.attend(*self.forward_qkv(a, positions))
        if not self.feedback:
            return f
        q_b, k_b, gamma = self.feedback_inputs(a)
        s = feedback_solve(
            q_b, k_b, f.unsqueeze(2), gamma,
            scale=1.0 / math.sqrt(self.d_model), impl=self.impl, chunk_size=self.chunk_size,
        )
        return s.squeeze(2)


class SessaLayer(GatedBlock):
    """y = x + W_out(s * g): the gated block of SESSA.md section 1 around a SessaMixer."""

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        n_kv_heads: int | None = None,
        gamma_max: float = 0.999,
        rope: bool = True,
        ln_eps: float = 1e-5,
        **mixer_kwargs,
    ) -> None:
        ln_eps = check_positive_float("ln_eps", ln_eps)
        super().__init__(d_model, SessaMixer(d_model, n_heads, n_kv_heads, gamma_max, rope, **mixer_kwargs), ln_eps)
