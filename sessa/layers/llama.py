"""Llama-style Transformer baseline: pre-norm RMSNorm, attention with RoPE, SwiGLU MLP, in alternating sub-blocks.

    h = x + W_o MHA(RMSNorm(x))                               (causal, RoPE, GQA: our AttentionMixer)
    y = h + W_down(SiLU(W_gate RMSNorm(h)) * W_up RMSNorm(h))  (SwiGLU, hidden width 8D/3 by default)

This is what a user would pick instead of the paper's gated block, so it is not a mixer inside GatedBlock:
the mixer table's entry is the attention (`LlamaAttentionMixer`, an AttentionMixer that always has its output
projection W_o) and its class attribute `block = LlamaBlock` tells the language model to build this block
around it, with an RMSNorm as the final norm. Differences from Meta's Llama: q/k/v keep our attention's
biases, RoPE rotates interleaved (even, odd) pairs (the same rotation up to a fixed permutation of the head
dims), and Linear layers keep torch's default initialisation like every other model here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sessa.layers.attention import AttentionMixer
from sessa.utils.checks import check_hidden, check_int

LLAMA_DEFAULTS: dict[str, Any] = {
    "mlp_hidden": None,  # SwiGLU hidden width; None: 8 * d_model / 3 rounded up to a multiple of 8 (Llama's rule)
}


def default_mlp_hidden(d_model: int) -> int:
    """Llama's SwiGLU width: 2/3 of a 4x MLP (same parameters as a GELU MLP), rounded up to a multiple of 8."""
    return 8 * math.ceil(8 * d_model / 3 / 8)


def llama_options(d_model: int, options: dict[str, Any] | None) -> dict[str, Any]:
    """Options over LLAMA_DEFAULTS, checked, with mlp_hidden filled in."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(LLAMA_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown llama mixer_options {unknown}; allowed: {sorted(LLAMA_DEFAULTS)}")
    opts = {**LLAMA_DEFAULTS, **options}
    check_int("d_model", d_model, lo=1)
    if opts["mlp_hidden"] is None:
        opts["mlp_hidden"] = default_mlp_hidden(d_model)
    check_int("mixer_options['mlp_hidden']", opts["mlp_hidden"], lo=1)
    return opts


class SwiGLU(nn.Module):
    """x [..., D] -> W_down(SiLU(W_gate x) * W_up x) [..., D], no biases (as in Llama)."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    """y = h + SwiGLU(RMSNorm(h)),  h = x + attention(RMSNorm(x)): one attention and one MLP sub-block."""

    def __init__(
        self, d_model: int, mixer: nn.Module | Callable[[], nn.Module], mlp_hidden: int, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.d_model = check_int("d_model", d_model, lo=1)
        self.attn_norm = nn.RMSNorm(d_model, eps=eps)
        if not isinstance(mixer, nn.Module) and callable(mixer):
            mixer = mixer()
        if not isinstance(mixer, nn.Module):
            raise TypeError(f"mixer must be an nn.Module or a factory returning one, got {type(mixer).__name__}")
        self.mixer = mixer  # the name the language model reads (which arguments the mixer accepts)
        self.mlp_norm = nn.RMSNorm(d_model, eps=eps)
        self.mlp = SwiGLU(d_model, check_int("mlp_hidden", mlp_hidden, lo=1))

    @classmethod
    def from_config(cls, config: Any, mixer: nn.Module | Callable[[], nn.Module]) -> LlamaBlock:
        """The block of one layer of a SessaConfig(mixer="llama"); mixer_options give the SwiGLU width."""
        opts = llama_options(config.d_model, config.mixer_options)
        return cls(config.d_model, mixer, opts["mlp_hidden"], config.ln_eps)

    @staticmethod
    def final_norm(config: Any) -> nn.Module:
        """Llama's final norm: RMSNorm."""
        return nn.RMSNorm(config.d_model, eps=config.ln_eps)

    def forward(self, x: torch.Tensor, **mixer_kwargs):
        """x [B, T, D] -> y [B, T, D]; mixer_kwargs (e.g. attention_mask=) go to the attention."""
        check_hidden("x", x, self.d_model, self.attn_norm.weight.dtype)
        h = x + self.mixer(self.attn_norm(x), **mixer_kwargs)
        return h + self.mlp(self.mlp_norm(h))


class LlamaAttentionMixer(AttentionMixer):
    """Causal MHA with RoPE (AttentionMixer) and an output projection W_o at every head count: in the Llama
    block nothing follows the attention before the residual (in the gated block, W_out does that job)."""

    # what the mixer table needs (sessa.layers.mixers); parameter matching tunes the SwiGLU width after the
    # model width, because one width step moves the parameter count by several per cent
    summary: ClassVar[str] = "Llama-style Transformer: RMSNorm, RoPE attention and SwiGLU MLP sub-blocks"
    accepts: ClassVar[frozenset[str]] = frozenset({"attention_mask"})
    options: ClassVar[dict[str, Any]] = LLAMA_DEFAULTS
    match_option: ClassVar[str | None] = "mlp_hidden"
    block: ClassVar[type[nn.Module]] = LlamaBlock

    def __init__(
        self, d_model: int, n_heads: int = 1, n_kv_heads: int | None = None, rope: bool = True,
        *, rope_theta: float = 10000.0,
    ) -> None:
        super().__init__(d_model, n_heads, n_kv_heads, rope, rope_theta=rope_theta)
        if self.o_proj is None:  # one head: AttentionMixer leaves W_o to the gated block; here it is needed
            self.o_proj = nn.Linear(d_model, d_model, bias=False)

    @classmethod
    def check_options(cls, d_model: int, options: dict[str, Any]) -> dict[str, Any]:
        return llama_options(d_model, options)


__all__ = ["LlamaAttentionMixer", "LlamaBlock", "SwiGLU", "LLAMA_DEFAULTS", "llama_options", "default_mlp_hidden"]
