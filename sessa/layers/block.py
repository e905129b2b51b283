"""The one block type of the paper: a pre-norm residual block with a gated, GELU-activated mixer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sessa.utils.checks import check_hidden


class GatedBlock(nn.Module):
    """y = x + W_out(mixer(GELU(a)) * g),  [a, g] = W_in LayerNorm(x).  g has no non-linearity."""

    def __init__(self, d_model: int, mixer: nn.Module, ln_eps: float = 1e-5) -> None:
        super().__init__()
        self.d_model = d_model
        self.norm = nn.LayerNorm(d_model, eps=ln_eps)
        self.in_proj = nn.Linear(d_model, 2 * d_model)
        self.mixer = mixer
        self.out_proj = nn.Linear(d_model, d_model)

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
