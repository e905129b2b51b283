"""The Sessa feedback solve: s_t = f_t + gamma_t * sum_{j<t} softmax_{j<t}(scale * q_t . k_j) s_j.

`feedback_solve` validates its arguments and dispatches to one implementation:
    naive      dense T x T matrix + triangular solve (the oracle, O(T^2) memory)
    recurrent  token loop (decoding, second oracle)
    chunk      block forward substitution with online softmax, O(T * D) memory (training default on CPU)
    triton     Triton kernels (GPU; needs the optional triton package, imported only when used)
    auto       recurrent for 2..8 new tokens at inference; otherwise, on CUDA with Triton installed (not
               float64), triton (training, prefill and one decoded token), else recurrent (1 token) / chunk
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from sessa.ops.feedback.naive import naive_feedback_solve
from sessa.ops.feedback.recurrent import recurrent_feedback_solve
from sessa.utils.checks import (
    check_bool,
    check_choice,
    check_cu_seqlens,
    check_finite,
    check_float,
    check_in_range,
    check_int,
    check_mask,
    check_tensor,
)

IMPLS: dict[str, Callable[..., torch.Tensor]] = {
    "naive": naive_feedback_solve,
    "recurrent": recurrent_feedback_solve,
}
try:  # the fast path lives in its own module
    from sessa.ops.feedback.chunk import chunk_feedback_solve

    IMPLS["chunk"] = chunk_feedback_solve
except ImportError:  # pragma: no cover - only while the fast path is absent
    pass
from sessa.ops.feedback.triton_solve import triton_available, triton_feedback_solve  # noqa: E402

# IMPLS are the float64-capable implementations (any device); the GPU kernels compute in float32
GPU_IMPLS: dict[str, Callable[..., torch.Tensor]] = {"triton": triton_feedback_solve}  # Triton loads on first call

DEFAULT_CHUNK_SIZE = 256  # measured best of 32..512 on CPU (docs/fast-path.md)
FinalState = tuple[torch.Tensor, torch.Tensor]


def _validate(
    q, k, f, gamma, scale, initial_state, attention_mask, cu_seqlens
) -> tuple[float, torch.Tensor | None, list[int] | None]:
    """Check every argument once (value checks only in debug mode): (scale, bool mask, cu_seqlens bounds)."""
    for name, x in (("q", q), ("k", k), ("f", f)):
        check_tensor(name, x, ndim=4, floating=True)
    check_tensor("gamma", gamma, ndim=3, floating=True)
    B, T, H, dk = q.shape
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {tuple(q.shape)}, got {tuple(k.shape)}")
    if f.shape[:3] != (B, T, H):
        raise ValueError(f"f must be [B, T, H, dv] = [{B}, {T}, {H}, dv], got {tuple(f.shape)}")
    if gamma.shape != (B, T, H):
        raise ValueError(f"gamma must be [B, T, H] = [{B}, {T}, {H}], got {tuple(gamma.shape)}")
    if dk == 0 or f.shape[-1] == 0 or H == 0:
        raise ValueError(f"head count and widths must be >= 1, got q {tuple(q.shape)}, f {tuple(f.shape)}")
    scale = 1.0 / math.sqrt(dk) if scale is None else check_float("scale", scale, lo=0.0, lo_open=True)
    for name, x in (("q", q), ("k", k), ("f", f)):
        check_finite(name, x)
    # |gamma| < 1 keeps I - diag(gamma) A_fb well conditioned (NaN fails this range too)
    check_in_range("gamma", gamma, -1.0, 1.0, open_interval=True, rule="must satisfy |gamma| < 1")
    n_past = 0
    if initial_state is not None:
        if not (isinstance(initial_state, (tuple, list)) and len(initial_state) == 2):
            raise TypeError("initial_state must be a pair (k_past [B, Tp, H, dk], s_past [B, Tp, H, dv])")
        k_past, s_past = initial_state
        check_tensor("initial_state[0] (k_past)", k_past, ndim=4, floating=True)
        check_tensor("initial_state[1] (s_past)", s_past, ndim=4, floating=True)
        n_past = k_past.shape[1]
        if k_past.shape != (B, n_past, H, dk):
            raise ValueError(f"k_past must be [{B}, Tp, {H}, {dk}], got {tuple(k_past.shape)}")
        if s_past.shape != (B, n_past, H, f.shape[-1]):
            raise ValueError(f"s_past must be [{B}, {n_past}, {H}, {f.shape[-1]}], got {tuple(s_past.shape)}")
        check_finite("initial_state[0] (k_past)", k_past)
        check_finite("initial_state[1] (s_past)", s_past)
    if attention_mask is not None:
        attention_mask = check_mask("attention_mask", attention_mask, (B, n_past + T))
    bounds = None
    if cu_seqlens is not None:
        if B != 1:
            raise ValueError(f"with cu_seqlens the batch must be packed into B = 1, got B = {B}")
        if initial_state is not None or attention_mask is not None:
            raise ValueError("cu_seqlens cannot be combined with initial_state or attention_mask")
        bounds = check_cu_seqlens(cu_seqlens, T)
    return scale, attention_mask, bounds


def feedback_solve(
    q: torch.Tensor,
    k: torch.Tensor,
    f: torch.Tensor,
    gamma: torch.Tensor,
    *,
    scale: float | None = None,
    impl: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    initial_state: FinalState | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, FinalState]:
    """Solve (I - diag(gamma) A_fb) s = f for s.

    Args:
        q, k: [B, T, H, dk] feedback queries and keys. f: [B, T, H, dv]. gamma: [B, T, H].
        scale: logit scale, default 1/sqrt(dk).
        impl: "auto" | "chunk" | "triton" | "naive" | "recurrent".
        chunk_size: block size C of the chunked solve.
        initial_state: (k_past [B, Tp, H, dk], s_past [B, Tp, H, dv]) — earlier tokens every row may read.
        output_final_state: also return (k_all, s_all) = past and new keys / solutions, the next state.
        cu_seqlens: [N + 1] offsets of N sequences packed along T (B = 1); no reads across boundaries.
        attention_mask: [B, Tp + T] bool, or integer 0/1, with 1 for real tokens; padded tokens neither read
            nor are read.
    Returns:
        s: [B, T, H, dv] in f's dtype (accumulated in float32, or float64 for float64 inputs),
        and the final state when output_final_state.

    Shapes, dtypes and arguments are always checked. The checks that read tensor values (NaN/Inf in q, k, f
    and initial_state, |gamma| < 1, mask entries in {0, 1}) run only in debug mode
    (`sessa.utils.checks.debug_checks`), so the default call never waits for the device; cu_seqlens is read
    on the host (the packed sequences are split there).
    """
    scale, attention_mask, bounds = _validate(q, k, f, gamma, scale, initial_state, attention_mask, cu_seqlens)
    check_choice("impl", impl, sorted((*IMPLS, *GPU_IMPLS, "auto")))
    check_int("chunk_size", chunk_size, lo=1)
    check_bool("output_final_state", output_final_state)
    if output_final_state and cu_seqlens is not None:
        raise ValueError("output_final_state is not defined for packed sequences (cu_seqlens)")
    T = q.shape[1]
    if impl == "auto":
        impl = "recurrent" if T <= 1 or "chunk" not in IMPLS else "chunk"
        if impl == "chunk" and not torch.is_grad_enabled() and T <= 8:
            impl = "recurrent"
        if (impl == "chunk" or T == 1) and q.is_cuda and f.dtype != torch.float64 and triton_available():
            impl = "triton"  # training / prefill kernels, or the decoding step for one token
    fn = IMPLS[impl] if impl in IMPLS else GPU_IMPLS[impl]
    kwargs: dict = {"scale": scale}
    if impl == "chunk":
        kwargs["chunk_size"] = chunk_size
    if T == 0:
        s = f.clone()
    elif cu_seqlens is not None and getattr(fn, "supports_cu_seqlens", False):
        s = fn(q, k, f, gamma, cu_seqlens=cu_seqlens, **kwargs)
    elif bounds is not None:  # generic fallback: each packed sequence alone
        parts = [
            fn(q[:, a:b], k[:, a:b], f[:, a:b], gamma[:, a:b], **kwargs)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            if b > a
        ]
        s = torch.cat(parts, dim=1) if parts else f.clone()
    else:
        s = fn(q, k, f, gamma, initial_state=initial_state, attention_mask=attention_mask, **kwargs)
    if not output_final_state:
        return s
    k_all, s_all = k, s
    if initial_state is not None:
        k_all = torch.cat([initial_state[0].to(k.dtype), k], dim=1)
        s_all = torch.cat([initial_state[1].to(s.dtype), s], dim=1)
    return s, (k_all, s_all)


__all__ = [
    "feedback_solve", "naive_feedback_solve", "recurrent_feedback_solve", "IMPLS", "GPU_IMPLS", "DEFAULT_CHUNK_SIZE"
]
