"""Backward of the Triton feedback solve: the transposed system by reverse halving, plus flash-form grads.

With M = I - diag(gamma) A, g = dL/ds and the forward's o = A s:
    u solves M^T u = g:  u_j = g_j + sum_{t > j} alpha[t, j] w_t,   w_t = gamma_t u_t
    dL/df = u,  dL/dgamma_t = <u_t, o_t>,  ds_past = alpha_past^T w
    dlogit[t, j] = alpha[t, j] (<w_t, s_j> - D_t),  D_t = <w_t, o_t>,  dq = scale dlogit k,  dk = scale dlogit^T q
Reverse halving over the leaf blocks: solve the second half, then, for the rectangle (second-half rows x
first-half keys), materialise alpha and dlogit tile by tile (their rows' w are final by then) and apply
three GEMMs: acc[keys] += alpha^T w[rows], dq[rows] += dlogit k[keys], dk[keys] += dlogit^T q[rows];
recurse into the first half. Each causal pair is visited once; the diagonal blocks and the past keys are
done in parallel after the recursion, when every w is known.
"""

from __future__ import annotations

import torch
import triton

from sessa.ops.feedback import triton_kernels as kern
from sessa.ops.feedback.triton_fwd import (
    INTERP,
    LEAF_BV,
    WARPS,
    Problem,
    gemm_acc,
    row_slices,
    weights,
    workspace,
)


def _rectangle(p: Problem, lse, w, values, o, r0, r1, c0, c1, acc, dq, dk) -> None:
    """All gradient terms of rows [r0, r1) x keys [c0, c1); acc, dk are indexed from key c0 (views)."""
    for a, b in row_slices(p, r0, r1, c1 - c0):
        wa = workspace(p, b - a, c1 - c0, torch.float32)
        wd = workspace(p, b - a, c1 - c0, p.op_dtype)
        weights(p, lse, a, b, c0, c1, wa, ds=wd, w=w, values=values, o=o)
        gemm_acc(p, wa.transpose(1, 2), w[:, a:b], acc)
        gemm_acc(p, wd, p.k[:, c0:c1], dq[:, a:b])
        gemm_acc(p, wd.transpose(1, 2), p.q[:, a:b], dk)


def triton_backward(p: Problem, grad_s, values, o, lse, a_diag, x_diag):
    """(dq, dk over past + new keys, ds_past or None, df, dgamma), heads-first float32, before `scale`
    on dq / dk; grad_s is [BH, Tp, dv] float32 (zero on padded rows)."""
    dev = grad_s.device
    BH, Tp, C, P, dv = p.BH, p.Tp, p.C, p.P, p.dv
    acc = torch.zeros(BH, Tp, dv, dtype=torch.float32, device=dev)
    u = torch.empty_like(acc)
    w = torch.empty_like(acc)
    dq = torch.zeros(BH, Tp, p.dk, dtype=torch.float32, device=dev)
    dk = torch.zeros(BH, p.N, p.dk, dtype=torch.float32, device=dev)

    def leaf(i: int) -> None:
        kern.leaf_bwd_kernel[(triton.cdiv(dv, LEAF_BV), BH)](
            x_diag, grad_s, acc, p.gamma, u, w, i * C, Tp, dv, C=C, BV=LEAF_BV, INTERP=INTERP, num_warps=WARPS
        )

    def solve(a: int, b: int) -> None:  # leaves [a, b); acc of their rows holds every later row's term
        if b - a == 1:
            leaf(a)
            return
        m = (a + b) // 2
        solve(m, b)
        r0, r1, c0, c1 = m * C, b * C, a * C, m * C
        _rectangle(p, lse, w, values, o, r0, r1, P + c0, P + c1, acc[:, c0:c1], dq, dk[:, P + c0 : P + c1])
        solve(a, m)

    solve(0, p.n_leaves)
    # diagonal blocks, all leaves at once: dlogit_RR, then block-diagonal products with q_R, k_R
    wd = workspace(p, Tp, C, p.op_dtype)
    weights(p, lse, 0, Tp, P, p.N, workspace(p, Tp, C, torch.float32), diag=True, ds=wd, w=w, values=values, o=o)
    nL = p.n_leaves
    wd3 = wd.view(BH * nL, C, C)
    k_new = p.k[:, P:].contiguous().view(BH * nL, C, p.dk)
    gemm_acc(p, wd3, k_new, dq.view(BH * nL, C, p.dk))
    dk_new = torch.zeros(BH * nL, C, p.dk, dtype=torch.float32, device=dev)
    gemm_acc(p, wd3.transpose(1, 2), p.q.view(BH * nL, C, p.dk), dk_new)
    dk[:, P:] += dk_new.view(BH, Tp, p.dk)
    ds_past = None
    if P:  # every row against the past keys, whose values s_past are given
        ds_past = torch.zeros(BH, P, dv, dtype=torch.float32, device=dev)
        _rectangle(p, lse, w, values, o, 0, Tp, 0, P, ds_past, dq, dk[:, :P])
    dgamma = (u * o).sum(-1)
    return dq, dk, ds_past, u, dgamma
