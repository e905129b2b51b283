"""impl="triton": the feedback solve as Triton kernels (GPU; the CPU runs them only under TRITON_INTERPRET=1).

Same contract as the other implementations (inputs validated by `feedback_solve`): s [B, T, H, dv] in f's
dtype, differentiable w.r.t. q, k, f, gamma and the past (k_past, s_past); `attention_mask` (padding) and
`cu_seqlens` (packing, handled natively: no host synchronisation) are supported. One new token against a
cache without gradients (decoding) takes a two-pass single-query kernel (triton_decode.py). bf16 inputs use bf16
tensor-core products with float32 accumulation; fp16, fp32 (and float64) inputs are computed in float32:
use impl="chunk" where float64 accuracy is wanted.
This module imports Triton only when the solve is called, so `sessa.ops` works with torch alone.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch


@functools.cache
def triton_available() -> bool:
    """True when the `triton` package imports (it is the optional `gpu` extra); asked only when needed."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreter_enabled() -> bool:
    """True when Triton runs kernels on the CPU (TRITON_INTERPRET=1, set before triton is imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _check_runnable(q: torch.Tensor) -> None:
    if not triton_available():
        raise ImportError('impl="triton" needs the triton package: pip install "sessa[gpu]" (or pip install triton)')
    if q.device.type != "cuda" and not interpreter_enabled():
        raise ValueError(
            f'impl="triton" runs on CUDA tensors (got device {q.device.type}); on CPU use impl="chunk", or set '
            "TRITON_INTERPRET=1 before importing triton to run the kernels in Triton's (slow) interpreter"
        )


def on_device(x: torch.Tensor):
    """Triton launches on the current CUDA device: make it x's (tensors on cuda:1 while cuda:0 is current)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _to_bthd(x: torch.Tensor, B: int, H: int, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """[B * H, >= rows, d] heads-first -> [B, rows, H, d] in dtype."""
    return x[:, :rows].reshape(B, H, rows, x.shape[-1]).transpose(1, 2).to(dtype)


class TritonFeedbackSolve(torch.autograd.Function):
    """forward = triton_forward, backward = triton_backward (nothing of size T x T is saved)."""

    @staticmethod
    def forward(ctx, q, k, f, gamma, k_past, s_past, attention_mask, cu_seqlens, scale: float):
        from sessa.ops.feedback.triton_fwd import prepare, triton_forward

        with on_device(q):
            p, fh, values = prepare(q, k, f, gamma, k_past, s_past, attention_mask, cu_seqlens, scale)
            o, lse, a_diag, x_diag = triton_forward(p, fh, values)
        ctx.problem = p
        ctx.save_for_backward(values, o, lse, a_diag, x_diag)
        ctx.dtypes = [None if x is None else x.dtype for x in (q, k, f, gamma, k_past, s_past)]
        return _to_bthd(values[:, p.P :], p.B, p.H, p.T, f.dtype).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_s):
        from sessa.ops.feedback.triton_bwd import triton_backward
        from sessa.ops.feedback.triton_fwd import heads_first

        p = ctx.problem
        values, o, lse, a_diag, x_diag = ctx.saved_tensors
        g = heads_first(grad_s, p.Tp, torch.float32)
        with on_device(g):
            dq, dk, ds_past, df, dgamma = triton_backward(p, g, values, o, lse, a_diag, x_diag)
        B, H, T, P = p.B, p.H, p.T, p.P
        need, dt = ctx.needs_input_grad, ctx.dtypes
        grads = [
            _to_bthd(dq * p.scale, B, H, T, dt[0]) if need[0] else None,
            _to_bthd(dk[:, P:] * p.scale, B, H, T, dt[1]) if need[1] else None,
            _to_bthd(df, B, H, T, dt[2]) if need[2] else None,
            dgamma[:, :T].reshape(B, H, T).transpose(1, 2).to(dt[3]) if need[3] else None,
            _to_bthd(dk[:, :P] * p.scale, B, H, P, dt[4]) if P and need[4] else None,
            _to_bthd(ds_past, B, H, P, dt[5]) if P and need[5] else None,
        ]
        return (*grads, None, None, None)


def triton_feedback_solve(
    q: torch.Tensor,
    k: torch.Tensor,
    f: torch.Tensor,
    gamma: torch.Tensor,
    *,
    scale: float,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    attention_mask: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve (I - diag(gamma) A_fb) s = f with the Triton kernels; returns s [B, T, H, dv] in f's dtype.

    Expects arguments already validated by `feedback_solve`; raises ImportError without Triton and
    ValueError for CPU tensors unless the interpreter is on.
    """
    _check_runnable(q)
    if q.shape[1] == 0:
        return f.clone()
    k_past, s_past = initial_state if initial_state is not None else (None, None)
    grads = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (q, k, f, gamma, k_past, s_past))
    if q.shape[1] == 1 and k_past is not None and not grads:  # decoding: one token against the cache
        if k_past.shape[1] == 0:
            return f.clone()
        from sessa.ops.feedback.triton_decode import triton_decode_step

        with on_device(q):
            return triton_decode_step(q, f, gamma, k_past, s_past, attention_mask, float(scale))
    return TritonFeedbackSolve.apply(q, k, f, gamma, k_past, s_past, attention_mask, cu_seqlens, float(scale))


triton_feedback_solve.supports_cu_seqlens = True  # the dispatcher passes cu_seqlens through (no per-sequence loop)
