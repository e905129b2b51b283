"""Dense reference for the Sessa feedback solve (the readable oracle).

    s_t = f_t + gamma_t * sum_{j<t} alpha_fb[t, j] * s_j,   alpha_fb[t] = softmax_{j<t}(scale * q_t . k_j)

i.e. (I - diag(gamma) A_fb) s = f with A_fb strictly causal. This file materialises the T x T matrix
and calls a unit-lower-triangular solve, like the authors' code: O(T^2) memory, exact, autograd-able.
"""

from __future__ import annotations

import torch

from sessa.ops.utils import accum_dtype, causal_allowed


def feedback_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    scale: float,
    n_past: int = 0,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """alpha_fb as a dense [B, H, T, n_past + T] tensor (rows with no visible key are all zero)."""
    logits = torch.einsum("bthd,bshd->bhts", q, k) * scale
    allowed = causal_allowed(q.shape[1], n_past, attention_mask, strict=True, device=q.device)  # [B|1, T, S]
    allowed = allowed[:, None]
    logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    # Multiplying by the mask zeroes rows whose support is empty (t = 0) without NaNs.
    return torch.softmax(logits, dim=-1) * allowed


def naive_feedback_solve(
    q: torch.Tensor,
    k: torch.Tensor,
    f: torch.Tensor,
    gamma: torch.Tensor,
    *,
    scale: float,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve (I - diag(gamma) A_fb) s = f densely. Inputs already validated; returns s in f's dtype."""
    out_dtype, dtype = f.dtype, accum_dtype(f.dtype)
    q, k, f, gamma = (x.to(dtype) for x in (q, k, f, gamma))
    n_past = 0
    if initial_state is not None:
        k_past, s_past = (x.to(dtype) for x in initial_state)
        n_past = k_past.shape[1]
        k = torch.cat([k_past, k], dim=1)
    alpha_fb = feedback_weights(q, k, scale=scale, n_past=n_past, attention_mask=attention_mask)
    g = gamma.transpose(1, 2).unsqueeze(-1)  # [B, H, T, 1]
    rhs = f.transpose(1, 2)  # [B, H, T, dv]
    if n_past:
        rhs = rhs + g * (alpha_fb[..., :n_past] @ s_past.transpose(1, 2))
    m = -g * alpha_fb[..., n_past:]
    m = m + torch.eye(m.shape[-1], dtype=dtype, device=m.device)
    s = torch.linalg.solve_triangular(m, rhs, upper=False, unitriangular=True)
    return s.transpose(1, 2).to(out_dtype)
