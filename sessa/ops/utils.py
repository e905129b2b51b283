"""Shared helpers for the ops: the accumulation dtype and the one causal/padding mask builder."""

from __future__ import annotations

import torch


def accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """The solve can amplify by 1/(1 - gamma_max): accumulate in float32, or float64 when given float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def causal_allowed(
    T: int,
    n_past: int = 0,
    attention_mask: torch.Tensor | None = None,
    *,
    strict: bool,
    device: torch.device,
) -> torch.Tensor:
    """Bool [B|1, T, n_past + T]: may new row t (absolute position n_past + t) read key j?

    strict=True (the feedback branch): j < n_past + t and both tokens real; a padded row reads nothing.
    strict=False (the forward branch, SDPA): j <= n_past + t and both real, and every row keeps its own key,
    so no row is empty (SDPA would return NaN); padded rows are never read by real tokens.
    attention_mask: bool [B, n_past + T], True for real tokens.
    """
    rows = torch.arange(n_past, n_past + T, device=device)[:, None]
    cols = torch.arange(n_past + T, device=device)[None, :]
    allowed = ((cols < rows) if strict else (cols <= rows))[None]
    if attention_mask is not None:
        m = attention_mask.to(device=device, dtype=torch.bool)
        allowed = allowed & m[:, None, :] & m[:, n_past:, None]
        if not strict:
            allowed = allowed | (cols == rows)[None]
    return allowed
