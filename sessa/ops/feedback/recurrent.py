"""Token-by-token form of the feedback solve: the decoding recurrence and a second, independent oracle.

    s_t = f_t + gamma_t * sum_{j<t} softmax_{j<t}(scale * q_t . k_j) s_j

Cost O(T^2 D) with a Python loop over t; used for decoding a handful of tokens against a cache.
"""

from __future__ import annotations

import torch

from sessa.ops.utils import accum_dtype


def recurrent_feedback_solve(
    q: torch.Tensor,
    k: torch.Tensor,
    f: torch.Tensor,
    gamma: torch.Tensor,
    *,
    scale: float,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forward substitution one row at a time, in float32/float64; returns s in f's dtype."""
    out_dtype, dtype = f.dtype, accum_dtype(f.dtype)
    q, k, f, gamma = (x.to(dtype) for x in (q, k, f, gamma))
    B, T, H, _ = q.shape
    if initial_state is not None:
        keys, values = (x.to(dtype) for x in initial_state)
    else:
        keys = k.new_zeros(B, 0, H, k.shape[-1])
        values = f.new_zeros(B, 0, H, f.shape[-1])
    n_past = keys.shape[1]
    key_ok = None if attention_mask is None else attention_mask.to(torch.bool)
    out = []
    for t in range(T):
        n = n_past + t
        s_t = f[:, t]
        if n > 0:
            logits = torch.einsum("bhd,bjhd->bhj", q[:, t], keys) * scale  # [B, H, n]
            if key_ok is None:
                alpha = torch.softmax(logits, dim=-1)
            else:
                ok = (key_ok[:, :n] & key_ok[:, n : n + 1])[:, None]  # padded rows attend nowhere
                logits = logits.masked_fill(~ok, torch.finfo(dtype).min)
                alpha = torch.softmax(logits, dim=-1) * ok
            s_t = s_t + gamma[:, t, :, None] * torch.einsum("bhj,bjhd->bhd", alpha, values)
        out.append(s_t)
        if t + 1 < T:  # the last row needs no append: skipping it saves an O(n) copy per decoded token
            keys = torch.cat([keys, k[:, t : t + 1]], dim=1)
            values = torch.cat([values, s_t[:, None]], dim=1)
    if not out:
        return f.new_zeros(f.shape, dtype=out_dtype)
    return torch.stack(out, dim=1).to(out_dtype)
