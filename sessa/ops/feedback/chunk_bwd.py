"""Backward kernel of the chunked feedback solve: reverse-time block substitution + FlashAttention-form grads.

With M = I - diag(gamma) A (A = alpha_fb over the new tokens) and g = dL/ds:
    u solves M^T u = g, i.e. u_j = g_j + sum_{t > j} A[t, j] w_t,   w_t = gamma_t u_t
    dL/df = u,   dL/dgamma_t = <u_t, o_t>,   o = A s (saved by the forward)
    dlogit[t, j] = A[t, j] (<w_t, s_j> - D_t),   D_t = <w_t, o_t>
    dq = scale * dlogit k,   dk = scale * dlogit^T q,   ds_past = A_past^T w
A is recomputed tile by tile from q, k and the saved log-normaliser lse; each (row, key) pair is visited
once: while block i's columns are being solved, the later rows' w are known, so their dq/dk terms are
accumulated in the same pass. Tensors here are [B, H, T, d] in the accumulation dtype.
"""

from __future__ import annotations

import torch

from sessa.ops.feedback.chunk_fwd import causal_bias, tile_len


def _weights(
    q_rows: torch.Tensor, keys: torch.Tensor, lse_rows: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """A[rows, keys] = exp(q k^T - lse) (q pre-scaled); bias holds -inf on masked / non-causal pairs."""
    logits = q_rows @ keys.transpose(-1, -2)
    if bias is not None:
        logits += bias
    return logits.sub_(lse_rows).exp_()


def _pair_grads(
    a: torch.Tensor,
    w_rows: torch.Tensor,
    d_rows: torch.Tensor,
    q_rows: torch.Tensor,
    k_cols: torch.Tensor,
    s_cols: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dq_rows, dk_cols) contributions of one tile, before the final factor `scale` on dq."""
    dlogit = (w_rows @ s_cols.transpose(-1, -2)).sub_(d_rows).mul_(a)
    return dlogit @ k_cols, dlogit.transpose(-1, -2) @ q_rows


def chunk_backward(
    grad_s: torch.Tensor,
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    gamma: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    *,
    n_past: int,
    chunk_size: int,
    key_bias: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    """Return (dq_scaled, dkeys, dvalues_past, df, dgamma); dq_scaled is dL/d(scale * q).

    Shapes as in chunk_forward; grad_s: [B, H, T, dv]. dkeys covers past and new keys, dvalues_past the
    past values only.
    """
    B, H, T, _ = q.shape
    C = min(chunk_size, T)
    tile = tile_len(C, B * H)
    cbias = causal_bias(C, q.dtype, q.device)
    dq = torch.zeros_like(q)
    dkeys = torch.zeros_like(keys)
    u = torch.empty_like(grad_s)
    w = torch.empty_like(grad_s)
    d_row = torch.empty_like(lse)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    starts = list(range(0, T, C))
    for r0 in reversed(starts):
        r1 = min(r0 + C, T)
        c = r1 - r0
        p0, p1 = n_past + r0, n_past + r1
        k_blk, s_blk = keys[:, :, p0:p1], values[:, :, p0:p1]
        kb = None if key_bias is None else key_bias[:, :, :, p0:p1]
        rhs = grad_s[:, :, r0:r1].clone()
        dk_blk = dkeys[:, :, p0:p1]
        for t0 in range(r1, T, tile):  # later rows: their w is known
            t1 = min(t0 + tile, T)
            a = _weights(q[:, :, t0:t1], k_blk, lse[:, :, t0:t1], kb)
            rhs += a.transpose(-1, -2) @ w[:, :, t0:t1]
            dq_t, dk_t = _pair_grads(a, w[:, :, t0:t1], d_row[:, :, t0:t1], q[:, :, t0:t1], k_blk, s_blk)
            dq[:, :, t0:t1] += dq_t
            dk_blk += dk_t
        # in-block: A_in (strictly lower) and the transposed unit-lower-triangular solve
        bias = cbias[:c, :c] if kb is None else cbias[:c, :c] + kb
        a_in = _weights(q[:, :, r0:r1], k_blk, lse[:, :, r0:r1], bias)
        g = gamma[:, :, r0:r1]
        m_t = (eye[:c, :c] - g * a_in).transpose(-1, -2)
        u_blk = torch.linalg.solve_triangular(m_t, rhs, upper=True, unitriangular=True)
        u[:, :, r0:r1] = u_blk
        w_blk = g * u_blk
        w[:, :, r0:r1] = w_blk
        d_blk = (w_blk * o[:, :, r0:r1]).sum(-1, keepdim=True)
        d_row[:, :, r0:r1] = d_blk
        dq_t, dk_t = _pair_grads(a_in, w_blk, d_blk, q[:, :, r0:r1], k_blk, s_blk)
        dq[:, :, r0:r1] += dq_t
        dk_blk += dk_t
    dvalues_past = None
    if n_past:  # every new row against the past keys, whose values s_past are given
        dvalues_past = torch.zeros_like(values[:, :, :n_past])
        ptile = tile_len(min(tile, T), B * H)
        for t0 in range(0, T, tile):
            t1 = min(t0 + tile, T)
            for j0 in range(0, n_past, ptile):
                j1 = min(j0 + ptile, n_past)
                kb = None if key_bias is None else key_bias[:, :, :, j0:j1]
                k_cols, s_cols = keys[:, :, j0:j1], values[:, :, j0:j1]
                a = _weights(q[:, :, t0:t1], k_cols, lse[:, :, t0:t1], kb)
                dvalues_past[:, :, j0:j1] += a.transpose(-1, -2) @ w[:, :, t0:t1]
                dq_t, dk_t = _pair_grads(a, w[:, :, t0:t1], d_row[:, :, t0:t1], q[:, :, t0:t1], k_cols, s_cols)
                dq[:, :, t0:t1] += dq_t
                dkeys[:, :, j0:j1] += dk_t
    dgamma = (u * o).sum(-1)  # [B, H, T]
    return dq, dkeys, dvalues_past, u, dgamma
