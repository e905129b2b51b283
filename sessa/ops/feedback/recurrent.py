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
    # The empty past is a zero-length slice of k and row 0 still evaluates its (empty) sum, so at T = 1
    # q, k and gamma stay in the autograd graph and get zero gradients, as in the dense solve, not None
    # (an optimizer skips a None gradient, DDP waits for it).
    keys, values = k[:, :0], f[:, :0]
    if initial_state is not None:
        past_k, values = (x.to(dtype) for x in initial_state)
        # keeping k in the graph when T = 1 reads only the past costs a copy: made under autograd only
        keys = torch.cat([past_k, keys], dim=1) if torch.is_grad_enabled() and k.requires_grad else past_k
    n_past = keys.shape[1]
    key_ok = None if attention_mask is None else attention_mask.to(torch.bool)
    out = []
    for t in range(T):
        n = n_past + t
        logits = torch.einsum("bhd,bjhd->bhj", q[:, t], keys) * scale  # [B, H, n]; n = 0 gives an empty sum
        if key_ok is None:
            alpha = torch.softmax(logits, dim=-1)
        else:
            ok = (key_ok[:, :n] & key_ok[:, n : n + 1])[:, None]  # padded rows attend nowhere
            logits = logits.masked_fill(~ok, torch.finfo(dtype).min)
            alpha = torch.softmax(logits, dim=-1) * ok
        s_t = f[:, t] + gamma[:, t, :, None] * torch.einsum("bhj,bjhd->bhd", alpha, values)
        out.append(s_t)
        if t + 1 < T:  # the last row needs no append: skipping it saves an O(n) copy per decoded token
            keys = torch.cat([keys, k[:, t : t + 1]], dim=1)
            values = torch.cat([values, s_t[:, None]], dim=1)
    if not out:
        return f.new_zeros(f.shape, dtype=out_dtype)
    return torch.stack(out, dim=1).to(out_dtype)
