"""Rotary position embedding with interleaved (even, odd) pairs, as in the authors' code."""

from __future__ import annotations

import torch


def rope_inv_freq(head_dim: int, theta: float = 10000.0, device: torch.device | None = None) -> torch.Tensor:
    """theta^(-2i/d) for pair i = 0 .. d/2 - 1."""
    i = torch.arange(0, head_dim, 2, dtype=torch.float64, device=device)
    return theta ** (-i / head_dim)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotate each (x[2i], x[2i+1]) of x [B, T, H, d] by angle p * theta^(-2i/d); positions [T] or [B, T]."""
    d = x.shape[-1]
    inv = rope_inv_freq(d, theta, device=x.device)
    angle = positions.to(torch.float64)[..., None] * inv  # [(B,) T, d/2], in float64 so long T stays exact
    if angle.dim() == 2:
        angle = angle[None]
    cos = torch.cos(angle)[:, :, None, :].to(x.dtype)
    sin = torch.sin(angle)[:, :, None, :].to(x.dtype)
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
    return out.flatten(-2)
