"""The one block type of the paper: a pre-norm residual block with a gated, GELU-activated mixer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sessa.utils.checks import check_hidden, check_int


class GatedBlock(nn.Module):
    """y = x + W_out(mixer(GELU(a)) * g),  [a, g] = W_in LayerNorm(x).  g has no non-linearity.

    `mixer` is a module or a zero-argument factory. A factory is called between W_in and W_out, so the
    random initial weights are drawn in data-flow order (norm, W_in, mixer, W_out), as the authors' layer
    draws them: the same seed then gives the same weights.
    """

    def __init__(self, d_model: int, mixer: nn.Module | Callable[[], nn.Module], ln_eps: float = 1e-5) -> None:
        super().__init__()
        self.d_model = check_int("d_model", d_model, lo=1)
        self.norm = nn.LayerNorm(d_model, eps=ln_eps)
        self.in_proj = nn.Linear(d_model, 2 * d_model)
        if not isinstance(mixer, nn.Module) and callable(mixer):
            mixer = mixer()
        if not isinstance(mixer, nn.Module):
            raise TypeError(f"mixer must be an nn.Module or a factory returning one, got {type(mixer).__name__}")
        self.mixer = mixer
        self.out_proj = nn.Linear(d_model, d_model)

    @classmethod
    def from_config(cls, config: Any, mixer: nn.Module | Callable[[], nn.Module]) -> GatedBlock:
        """The block of one layer of a SessaConfig around `mixer` (a module or a factory)."""
        return cls(config.d_model, mixer, config.ln_eps)

    @staticmethod
    def final_norm(config: Any) -> nn.Module:
        """The norm after the last block of a model made of these blocks."""
        return nn.LayerNorm(config.d_model, eps=config.ln_eps)

    def forward(self, x: torch.Tensor, **mixer_kwargs):
        """x: [B, T, D] -> y: [B, T, D]. If the mixer returns (s, extra), returns (y, extra).

        mixer_kwargs go to the mixer unchanged, e.g. `cache=`, `use_cache=`, `attention_mask=`, `cu_seqlens=`
        for a SessaMixer, which then returns (s, cache) so the block returns (y, cache). x must have the
        parameters' dtype unless torch.autocast is active.
        """
        check_hidden("x", x, self.d_model, self.in_proj.weight.dtype)
        a, g = self.in_proj(self.norm(x)).chunk(2, dim=-1)
        out = self.mixer(F.gelu(a), **mixer_kwargs)
        s, extra = (out[0], out[1:]) if isinstance(out, tuple) else (out, None)
        y = x + self.out_proj(s * g)
        if extra is None:
            return y
        return (y, *extra)
