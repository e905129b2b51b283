"""Forward of the Triton feedback solve: parallel normalisers, parallel diagonal inverses, halving solve.

    s_t = f_t + gamma_t * sum_{j<t} alpha[t, j] s_j,   alpha[t, j] = exp(scale q_t . k_j - lse_t)

1. lse_t depends on (q, k) only: one flash-style pass computes it for every row at once (`lse_kernel`).
2. With lse fixed, every weight is known tile by tile. The diagonal C x C blocks A_RR and their inverses
   X_R = (I - diag(gamma_R) A_RR)^{-1} do not depend on s either: computed for all blocks in parallel.
3. The solve itself is block forward substitution by recursive halving over the Tp / C leaf blocks:
   solve the first half, add the whole first half's contribution to the second half with one large
   parallel product (weights materialised tile by tile into a bounded workspace, then a GEMM), recurse.
   A leaf is s_R = X_R (f_R + gamma_R o_R) with o_R the sum over every earlier key.
Memory: O(T * (D + C)) saved for the backward plus a workspace of at most WORKSPACE_ELEMENTS weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sessa.ops.feedback import triton_kernels as kern

LEAF = 64  # C: rows per diagonal block (the sequential step); smaller T use the next power of two >= 16
WORKSPACE_ELEMENTS = 1 << 26  # weights materialised at once over the whole batch (256 MiB in float32)
TILE = 64  # rows / keys per program of the tile and GEMM kernels
# 8 warps for the normaliser, tile and leaf kernels, and 16 value columns per leaf program: the settings
# whose sm_90 builds do not spill registers (ptxas -v; the exact-float32 C x C leaf products are the
# hungriest), which also gives a batch-1 leaf step D / 16 parallel programs
WARPS = 8
LEAF_BV = 16
INTERP = type(kern.lse_kernel).__name__ == "InterpretedFunction"


@dataclass
class Problem:
    """Shapes, padded heads-first inputs and masks shared by the forward and the backward."""

    B: int
    T: int
    H: int
    P: int  # past tokens (initial_state)
    C: int  # leaf size
    Tp: int  # T rounded up to a multiple of C (padded rows read nothing and are never read)
    dk: int
    dv: int
    scale: float
    op_dtype: torch.dtype  # dtype of q, k and the logit gradients: bfloat16 for bf16 inputs, else float32
    q: torch.Tensor  # [BH, Tp, dk] op_dtype
    k: torch.Tensor  # [BH, N, dk] op_dtype, past then new keys
    lo: torch.Tensor  # [B, Tp] int32: first absolute key each row may read (P + t: reads nothing)
    key_ok: torch.Tensor | None  # [B, N] int8 (attention_mask over past + new), None when all real
    gamma: torch.Tensor  # [BH, Tp] float32

    @property
    def BH(self) -> int:
        return self.B * self.H

    @property
    def N(self) -> int:
        return self.P + self.Tp

    @property
    def n_leaves(self) -> int:
        return self.Tp // self.C

    @property
    def tl_dtype(self):
        return tl.bfloat16 if self.op_dtype == torch.bfloat16 else tl.float32

    @property
    def prec(self) -> str:
        """Precision of the products with float32 operands: TF32 for bf16 inputs, exact otherwise."""
        return "tf32" if self.op_dtype == torch.bfloat16 else "ieee"

    @property
    def block_k(self) -> int:
        """Width consumed per step of a product; float32 tiles take half (registers), the interpreter 64
        (fewer, larger numpy steps)."""
        return 64 if self.op_dtype == torch.bfloat16 or INTERP else 32


def leaf_size(T: int) -> int:
    """C: LEAF, or the next power of two >= T (at least 16, the smallest tensor-core tile) for short T."""
    return max(16, min(LEAF, triton.next_power_of_2(T)))


def heads_first(x: torch.Tensor, rows: int, dtype: torch.dtype, offset: int = 0, out=None) -> torch.Tensor:
    """[B, T, H, d] -> rows [offset, offset + T) of a zero-padded contiguous [B * H, rows, d] tensor."""
    B, T, H, d = x.shape
    if out is None:
        out = x.new_zeros((B * H, rows, d), dtype=dtype)
    out[:, offset : offset + T] = x.transpose(1, 2).reshape(B * H, T, d)
    return out


def prepare(q, k, f, gamma, k_past, s_past, attention_mask, cu_seqlens, scale: float):
    """(Problem, f [BH, Tp, dv] float32, values [BH, N, dv] float32 with s_past in place)."""
    B, T, H, dk = q.shape
    dv = f.shape[-1]
    P = 0 if k_past is None else k_past.shape[1]
    C = leaf_size(T)
    Tp = -(-T // C) * C
    N = P + Tp
    op = torch.bfloat16 if q.dtype == k.dtype == torch.bfloat16 else torch.float32
    dev = q.device
    qh = heads_first(q, Tp, op)
    kh = q.new_zeros((B * H, N, dk), dtype=op)
    heads_first(k, N, op, P, out=kh)
    values = f.new_zeros((B * H, N, dv), dtype=torch.float32)
    if P:
        heads_first(k_past, N, op, 0, out=kh)
        heads_first(s_past, N, torch.float32, 0, out=values)
    fh = heads_first(f, Tp, torch.float32)
    gh = gamma.new_zeros((B * H, Tp), dtype=torch.float32)
    gh[:, :T] = gamma.transpose(1, 2).reshape(B * H, T)
    t = torch.arange(Tp, device=dev, dtype=torch.int32)
    lo = torch.zeros(B, Tp, dtype=torch.int32, device=dev)
    if cu_seqlens is not None:  # packed: a row reads from the start of its own sequence (no host sync)
        cu = cu_seqlens.to(device=dev, dtype=torch.long)
        starts = torch.repeat_interleave(cu[:-1], cu[1:] - cu[:-1], output_size=T)
        lo[0, :T] = starts.to(torch.int32)
    real_row = (t < T)[None].expand(B, Tp)
    key_ok = None
    if attention_mask is not None:
        m = attention_mask.to(device=dev, dtype=torch.bool)
        real_row = real_row.clone()
        real_row[:, :T] &= m[:, P:]
        key_ok = torch.zeros(B, N, dtype=torch.int8, device=dev)
        key_ok[:, : P + T] = m.to(torch.int8)
    lo = torch.where(real_row, lo, P + t[None])  # padded rows: the empty key range [P + t, P + t)
    prob = Problem(B, T, H, P, C, Tp, dk, dv, scale, op, qh, kh, lo.contiguous(), key_ok, gh)
    return prob, fh, values


def _key_mask(p: Problem) -> tuple[torch.Tensor, bool]:
    return (p.lo, False) if p.key_ok is None else (p.key_ok, True)


def row_normalisers(p: Problem) -> torch.Tensor:
    """lse [BH, Tp] float32 (+inf on rows that read nothing)."""
    lse = torch.empty(p.BH, p.Tp, dtype=torch.float32, device=p.q.device)
    kok, has = _key_mask(p)
    grid = (triton.cdiv(p.Tp, TILE), p.BH)
    kern.lse_kernel[grid](
        p.q, p.k, p.lo, kok, lse, p.P, p.Tp, p.N, p.dk, p.H, p.scale,
        HAS_KMASK=has, BM=TILE, BN=TILE, BK=p.block_k, DT=p.tl_dtype, INTERP=INTERP, num_warps=WARPS,
    )
    return lse


def weights(p: Problem, lse, r0, r1, c0, c1, out_a, *, diag=False, ds=None, w=None, values=None, o=None):
    """alpha (and the logit gradient ds when given) of rows [r0, r1) x keys [c0, c1) into out_a / ds."""
    kok, has = _key_mask(p)
    bm = p.C if diag else TILE
    n_cols = p.C if diag else c1 - c0
    grid = (triton.cdiv(r1 - r0, bm), 1 if diag else triton.cdiv(c1 - c0, TILE), p.BH)
    dummy = lse
    kern.tile_kernel[grid](
        p.q, p.k, p.lo, kok, lse, dummy if w is None else w, dummy if values is None else values,
        dummy if o is None else o, out_a, out_a if ds is None else ds,
        r0, r1, c0, c1, p.P, p.Tp, p.N, p.dk, p.dv, p.H, p.scale, n_cols,
        HAS_KMASK=has, DIAG=diag, WITH_DS=ds is not None, BM=bm, BN=bm, BK=p.block_k, DT=p.tl_dtype,
        PREC=p.prec, INTERP=INTERP, num_warps=WARPS,
    )


def gemm_acc(p: Problem, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> None:
    """c += x @ y for 3-D [Z, M, K] x [Z, K, N] -> [Z, M, N] views (any strides), c float32.

    Operands of the op dtype (bf16 logit gradients with bf16 q / k) multiply in that dtype; float32
    operands at the problem's float32 precision (TF32 for bf16 inputs, exact for float32 inputs).
    """
    low = x.dtype != torch.float32 and y.dtype != torch.float32
    Z, M, K = x.shape
    Nn = y.shape[2]
    grid = (triton.cdiv(M, TILE), triton.cdiv(Nn, TILE), Z)
    kern.gemm_acc_kernel[grid](
        x, y, c, M, Nn, K, *x.stride(), *y.stride(), *c.stride(),
        BM=TILE, BN=TILE, BK=p.block_k, DT=p.tl_dtype if low else tl.float32, PREC=p.prec, INTERP=INTERP,
    )


def row_slices(p: Problem, r0: int, r1: int, n_cols: int) -> list[tuple[int, int]]:
    """Split rows [r0, r1) so that rows x n_cols x BH weights fit the workspace."""
    step = max(TILE, (WORKSPACE_ELEMENTS // max(1, n_cols * p.BH)) // TILE * TILE)
    return [(a, min(a + step, r1)) for a in range(r0, r1, step)]


def workspace(p: Problem, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(p.BH, rows, cols, dtype=dtype, device=p.q.device)


def accumulate_rows(p: Problem, lse, o, values, r0, r1, c0, c1) -> None:
    """o[rows] += alpha[rows, keys] @ s[keys] for rows [r0, r1) and keys [c0, c1) (workspace-bounded)."""
    for a, b in row_slices(p, r0, r1, c1 - c0):
        ws = workspace(p, b - a, c1 - c0, torch.float32)
        weights(p, lse, a, b, c0, c1, ws)
        gemm_acc(p, ws, values[:, c0:c1], o[:, a:b])


def diagonal_blocks(p: Problem, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_RR, X_R) for every leaf, [BH, Tp, C] float32 each, computed in parallel.

    X_R = (I - diag(gamma_R) A_RR)^{-1}: a unit-lower-triangular inverse (float32 triangular solve).
    """
    C, nL = p.C, p.n_leaves
    a_diag = workspace(p, p.Tp, C, torch.float32)
    weights(p, lse, 0, p.Tp, p.P, p.N, a_diag, diag=True)
    a4 = a_diag.view(p.BH, nL, C, C)
    eye = torch.eye(C, dtype=torch.float32, device=a_diag.device)
    m = eye - p.gamma.view(p.BH, nL, C, 1) * a4
    x = torch.linalg.solve_triangular(m, eye.expand_as(m), upper=False, unitriangular=True)
    return a_diag, x.reshape(p.BH, p.Tp, C).contiguous()


def triton_forward(p: Problem, fh: torch.Tensor, values: torch.Tensor):
    """Fill values[:, P:] with s; return (o = alpha s [BH, Tp, dv], lse, a_diag, x_diag)."""
    lse = row_normalisers(p)
    o = torch.zeros(p.BH, p.Tp, p.dv, dtype=torch.float32, device=fh.device)
    if p.P:  # every row's contribution from the past keys: one parallel product
        accumulate_rows(p, lse, o, values, 0, p.Tp, 0, p.P)
    a_diag, x_diag = diagonal_blocks(p, lse)

    def leaf(i: int) -> None:
        kern.leaf_fwd_kernel[(triton.cdiv(p.dv, LEAF_BV), p.BH)](
            x_diag, a_diag, fh, p.gamma, o, values, i * p.C, p.P, p.Tp, p.N, p.dv, C=p.C, BV=LEAF_BV,
            INTERP=INTERP, num_warps=WARPS,
        )

    def solve(a: int, b: int) -> None:  # leaves [a, b); o of their rows already holds every key before a
        if b - a == 1:
            leaf(a)
            return
        m = (a + b) // 2
        solve(a, m)
        accumulate_rows(p, lse, o, values, m * p.C, b * p.C, p.P + a * p.C, p.P + m * p.C)
        solve(m, b)

    solve(0, p.n_leaves)
    return o, lse, a_diag, x_diag
