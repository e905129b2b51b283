"""Chunked feedback solve: O(T * D)-memory block forward substitution with its own blocked backward.

    s_t = f_t + gamma_t * sum_{j<t} softmax_{j<t}(scale * q_t . k_j) s_j     (docs/equations.md §2 and §4)

Same semantics as `naive_feedback_solve` (the oracle), never materialising T x T: see chunk_fwd.py for the
forward (online, tile-merged softmax + C x C triangular solves) and chunk_bwd.py for the backward (reverse-time
transposed solve, FlashAttention-form gradients recomputed from saved log-normalisers). Pure PyTorch, so it
runs unchanged on GPU; bf16/fp16 inputs are accumulated in float32 (float64 stays float64).
"""

from __future__ import annotations

import torch

from sessa.ops.feedback.chunk_bwd import chunk_backward
from sessa.ops.feedback.chunk_fwd import NEG, chunk_forward
from sessa.ops.utils import accum_dtype


def _heads_first(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T, H, d] -> contiguous [B, H, T, d] in the accumulation dtype (one copy, O(T * D))."""
    return x.transpose(1, 2).to(dtype).contiguous()


def _masks(
    attention_mask: torch.Tensor | None, n_past: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(key_bias [B, 1, 1, Tp + T] with -inf on padded keys, row_ok [B, 1, T, 1]) or (None, None)."""
    if attention_mask is None:
        return None, None
    ok = attention_mask.to(device=device, dtype=torch.bool)
    key_bias = torch.zeros(ok.shape, dtype=dtype, device=device).masked_fill(~ok, NEG)[:, None, None, :]
    return key_bias, ok[:, n_past:][:, None, :, None]


class ChunkFeedbackSolve(torch.autograd.Function):
    """autograd.Function: forward = chunk_forward, backward = chunk_backward (no T x T tensors saved)."""

    @staticmethod
    def forward(ctx, q, k, f, gamma, k_past, s_past, attention_mask, scale: float, chunk_size: int):
        dtype = accum_dtype(f.dtype)
        n_past = 0 if k_past is None else k_past.shape[1]
        qs = _heads_first(q, dtype) * scale  # fold the logit scale into q once
        keys = _heads_first(k, dtype)
        B, H, T, _ = qs.shape
        values = f.new_empty((B, H, n_past + T, f.shape[-1]), dtype=dtype)
        if n_past:
            keys = torch.cat([_heads_first(k_past, dtype), keys], dim=2)
            values[:, :, :n_past] = _heads_first(s_past, dtype)
        fh = _heads_first(f, dtype)
        gh = gamma.transpose(1, 2).to(dtype).unsqueeze(-1)  # [B, H, T, 1]
        key_bias, row_ok = _masks(attention_mask, n_past, dtype, qs.device)
        o, lse = chunk_forward(
            qs, keys, values, fh, gh, n_past=n_past, chunk_size=chunk_size, key_bias=key_bias, row_ok=row_ok
        )
        ctx.save_for_backward(qs, keys, values, gh, o, lse, key_bias)
        ctx.meta = (scale, chunk_size, n_past, [x.dtype if x is not None else None for x in (q, k, f, gamma,
                                                                                             k_past, s_past)])
        # a fresh tensor, not a view of the saved `values` (in-place edits by the caller must not reach it)
        return values[:, :, n_past:].transpose(1, 2).to(f.dtype, memory_format=torch.contiguous_format, copy=True)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_s):
        qs, keys, values, gh, o, lse, key_bias = ctx.saved_tensors
        scale, chunk_size, n_past, dtypes = ctx.meta
        dtype = qs.dtype
        dq, dkeys, dvalues_past, df, dgamma = chunk_backward(
            _heads_first(grad_s, dtype), qs, keys, values, gh, o, lse,
            n_past=n_past, chunk_size=chunk_size, key_bias=key_bias,
        )

        def back(x: torch.Tensor | None, i: int) -> torch.Tensor | None:
            """[B, H, T, d] -> [B, T, H, d] in the dtype of input i (None when it did not need a gradient)."""
            if x is None or not ctx.needs_input_grad[i]:
                return None
            return x.transpose(1, 2).to(dtypes[i])

        grads = (
            back(dq * scale, 0),
            back(dkeys[:, :, n_past:], 1),
            back(df, 2),
            dgamma.transpose(1, 2).to(dtypes[3]) if ctx.needs_input_grad[3] else None,
            back(dkeys[:, :, :n_past], 4) if n_past else None,
            back(dvalues_past, 5),
        )
        return (*grads, None, None, None)


def chunk_feedback_solve(
    q: torch.Tensor,
    k: torch.Tensor,
    f: torch.Tensor,
    gamma: torch.Tensor,
    *,
    scale: float,
    chunk_size: int,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve (I - diag(gamma) A_fb) s = f blockwise; returns s [B, T, H, dv] in f's dtype, differentiable
    w.r.t. q, k, f, gamma and the past (k_past, s_past) of initial_state.

    Like the other implementations it trusts the arguments `feedback_solve` validated (shapes, scale,
    chunk_size) and checks nothing again.
    """
    k_past, s_past = initial_state if initial_state is not None else (None, None)
    if q.shape[1] == 0:
        return f.clone()
    return ChunkFeedbackSolve.apply(q, k, f, gamma, k_past, s_past, attention_mask, float(scale), chunk_size)
