"""Triton kernels of the feedback solve (imported lazily: only `triton_fwd` / `triton_bwd` import this module).

All tensors are heads-first and contiguous: rows of one (batch, head) pair follow each other, [BH, rows, d].
Row t of the new tokens (0 <= t < Tp) sits at absolute key position P + t (P = number of past tokens) and
reads the keys j with lo[t] <= j < P + t and key_ok[j] (left padding); padded rows have lo[t] = P + t, so
they read nothing. With the row normalisers lse known, every weight is a closed-form function of (q_t, k_j):
    alpha[t, j] = exp(scale * q_t . k_j - lse_t)    on allowed pairs, 0 elsewhere,
which lets the solve tile the pairs freely (no online rescaling). Every product accumulates in float32.
Operand precision: with float32 inputs all products are exact float32 ("ieee"); with bf16 inputs q . k
multiplies the (exact) bf16 inputs, products with float32 operands (alpha, s, w) use TF32 and the logit
gradients are rounded to bf16 before their products with q and k (as in FlashAttention's backward).
"""

from __future__ import annotations

import triton
import triton.language as tl

NEG: tl.constexpr = tl.constexpr(-1.0e30)  # finite -inf: exp(NEG - m) == 0, no inf - inf NaNs


@triton.jit
def _round(x, DROP: tl.constexpr):
    """Round float32 x to nearest-even keeping 23 - DROP mantissa bits (16: bfloat16, 13: TF32).

    Only used by the CPU interpreter, whose own float32 -> bfloat16 cast truncates and whose TF32 products
    are exact: emulating the GPU's rounding keeps the interpreter's error figures honest.
    """
    bits = x.to(tl.int32, bitcast=True)
    half = (1 << (DROP - 1)) - 1
    bits = (bits + half + ((bits >> DROP) & 1)) & ~((1 << DROP) - 1)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _dot(a, b, acc, DT: tl.constexpr, PREC: tl.constexpr, INTERP: tl.constexpr):
    """acc + a @ b with float32 accumulation; operands rounded to DT (bfloat16), or float32 multiplied with
    PREC precision ("ieee": exact products, "tf32": tensor cores, 10-bit mantissas)."""
    if INTERP:  # the interpreter multiplies bf16 bit patterns as integers: emulate in float32 instead
        a = a.to(tl.float32)
        b = b.to(tl.float32)
        if DT == tl.bfloat16:
            a = _round(a, 16)
            b = _round(b, 16)
        elif PREC == "tf32":
            a = _round(a, 13)
            b = _round(b, 13)
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        a = a.to(DT)
        b = b.to(DT)
        if DT == tl.float32:
            acc = tl.dot(a, b, acc, input_precision=PREC)
        else:
            acc = tl.dot(a, b, acc)
    return acc


@triton.jit
def _store_cast(x, DT: tl.constexpr, INTERP: tl.constexpr):
    """x (float32) as DT for a store, rounded to nearest-even (emulated in the interpreter)."""
    if INTERP and DT == tl.bfloat16:
        x = _round(x, 16)
    return x.to(DT)


@triton.jit
def _logits(Q, K, q_base, k_base, rows, cols, row_in, col_in, DK, BM: tl.constexpr, BN: tl.constexpr,
            BK: tl.constexpr, DT: tl.constexpr, INTERP: tl.constexpr):
    """q_rows . k_cols^T as a float32 [BM, BN] tile, the width DK consumed BK columns at a time."""
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for d0 in range(0, DK, BK):
        dd = d0 + tl.arange(0, BK)
        d_in = dd < DK
        qt = tl.load(Q + q_base + rows[:, None] * DK + dd[None, :], mask=row_in[:, None] & d_in[None, :], other=0.0)
        kt = tl.load(K + k_base + cols[None, :] * DK + dd[:, None], mask=col_in[None, :] & d_in[:, None], other=0.0)
        acc = _dot(qt, kt, acc, DT, "ieee", INTERP)
    return acc


@triton.jit
def _allowed(LO, KOK, b, rows, cols, row_in, col_in, P, Tp, N, HAS_KMASK: tl.constexpr):
    """[BM, BN] bool: row t may read key j (lo[t] <= j < P + t, both in range, key real)."""
    lo = tl.load(LO + b * Tp + rows, mask=row_in, other=0)
    ok = (cols[None, :] < (P + rows)[:, None]) & (cols[None, :] >= lo[:, None]) & row_in[:, None] & col_in[None, :]
    if HAS_KMASK:
        kok = tl.load(KOK + b * N + cols, mask=col_in, other=0)
        ok = ok & (kok[None, :] != 0)
    return ok


@triton.jit
def lse_kernel(Q, K, LO, KOK, LSE, P, Tp, N, DK, H, scale, HAS_KMASK: tl.constexpr, BM: tl.constexpr,
               BN: tl.constexpr, BK: tl.constexpr, DT: tl.constexpr, INTERP: tl.constexpr):
    """lse[t] = log sum_{allowed j} exp(scale q_t . k_j) (+inf for rows that read nothing). Grid (Tp/BM, BH).

    Flash-style: one program streams the keys of its BM rows with an online max / sum; every row block
    is independent, so the whole pass is parallel over rows, batch and heads.
    """
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    rows = pid_m * BM + tl.arange(0, BM)
    row_in = rows < Tp
    lo = tl.load(LO + b * Tp + rows, mask=row_in, other=2147483647)
    j_start = (tl.min(lo, axis=0) // BN) * BN
    j_end = tl.minimum(P + pid_m * BM + BM - 1, N)
    m_i = tl.full((BM,), NEG, dtype=tl.float32)
    l_i = tl.zeros((BM,), dtype=tl.float32)
    for j0 in range(j_start, j_end, BN):
        cols = j0 + tl.arange(0, BN)
        col_in = cols < N
        s = _logits(Q, K, bh * Tp * DK, bh * N * DK, rows, cols, row_in, col_in, DK, BM, BN, BK, DT, INTERP)
        ok = _allowed(LO, KOK, b, rows, cols, row_in, col_in, P, Tp, N, HAS_KMASK)
        s = tl.where(ok, s * scale, NEG)
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.where(ok, tl.exp(s - m_new[:, None]), 0.0)
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(p, axis=1)
        m_i = m_new
    lse = tl.where(l_i > 0, m_i + tl.log(tl.maximum(l_i, 1e-30)), float("inf"))
    tl.store(LSE + bh * Tp + rows, lse, mask=row_in)


@triton.jit
def tile_kernel(Q, K, LO, KOK, LSE, W, V, O, OUT_A, OUT_DS, r0, r1, c0, c1, P, Tp, N, DK, DV, H, scale,
                out_cols, HAS_KMASK: tl.constexpr, DIAG: tl.constexpr, WITH_DS: tl.constexpr,
                BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
                INTERP: tl.constexpr):
    """Materialise the weights of rows [r0, r1) x keys [c0, c1): OUT_A[bh, t - r0, j - c0] = alpha[t, j]
    (float32), and with WITH_DS the logit gradients in OUT_DS (dtype DT).

    Grid (rows / BM, keys / BN, BH). DIAG: the diagonal blocks of all leaves at once (block pid_m reads keys
    c0 + pid_m * BM + [0, BN), written at column j - c0 - pid_m * BM). WITH_DS (backward): also
    OUT_DS = alpha * (<w_t, s_j> - D_t) with D_t = <w_t, o_t>, the logit gradient (before `scale`);
    W = gamma * u [BH, Tp, DV], V = s of all keys [BH, N, DV], O = alpha s [BH, Tp, DV] (float32).
    The output has out_cols columns per row and (r1 - r0) rows per (batch, head).
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    bh = tl.program_id(2).to(tl.int64)
    b = bh // H
    rows = r0 + pid_m * BM + tl.arange(0, BM)
    row_in = rows < r1
    kbase = c0 + pid_n * BN
    if DIAG:
        kbase += pid_m * BM
    cols = kbase + tl.arange(0, BN)
    col_in = cols < c1
    s = _logits(Q, K, bh * Tp * DK, bh * N * DK, rows, cols, row_in, col_in, DK, BM, BN, BK, DT, INTERP)
    ok = _allowed(LO, KOK, b, rows, cols, row_in, col_in, P, Tp, N, HAS_KMASK)
    lse = tl.load(LSE + bh * Tp + rows, mask=row_in, other=0.0)
    a = tl.where(ok, tl.exp(s * scale - lse[:, None]), 0.0)
    out_c = cols - c0
    if DIAG:
        out_c -= pid_m * BM
    n_rows = r1 - r0
    out = bh * n_rows * out_cols + (rows - r0)[:, None] * out_cols + out_c[None, :]
    out_ok = row_in[:, None] & col_in[None, :]
    tl.store(OUT_A + out, a, mask=out_ok)
    if WITH_DS:
        ws = tl.zeros((BM, BN), dtype=tl.float32)
        d_row = tl.zeros((BM,), dtype=tl.float32)
        for v0 in range(0, DV, BK):
            vv = v0 + tl.arange(0, BK)
            v_in = vv < DV
            rmask = row_in[:, None] & v_in[None, :]
            w = tl.load(W + bh * Tp * DV + rows[:, None] * DV + vv[None, :], mask=rmask, other=0.0)
            o = tl.load(O + bh * Tp * DV + rows[:, None] * DV + vv[None, :], mask=rmask, other=0.0)
            sv = tl.load(V + bh * N * DV + cols[None, :] * DV + vv[:, None], mask=col_in[None, :] & v_in[:, None],
                         other=0.0)
            ws = _dot(w, sv, ws, tl.float32, PREC, INTERP)
            d_row += tl.sum(w * o, axis=1)
        ds = a * (ws - d_row[:, None])
        tl.store(OUT_DS + out, _store_cast(ds, DT, INTERP), mask=out_ok)


@triton.jit
def gemm_acc_kernel(X, Y, Cm, M, Nn, Kk, sxz, sxm, sxk, syz, syk, syn, scz, scm, scn,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
                    INTERP: tl.constexpr):
    """C[z] += X[z] @ Y[z] (M x K times K x N, any strides: transposes are stride swaps), float32 C.

    Grid (M / BM, N / BN, Z). Operands are rounded to DT (or multiplied at PREC), summed in float32.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    z = tl.program_id(2).to(tl.int64)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    m_in = rm < M
    n_in = rn < Nn
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, Kk, BK):
        rk = k0 + tl.arange(0, BK)
        k_in = rk < Kk
        x = tl.load(X + z * sxz + rm[:, None] * sxm + rk[None, :] * sxk, mask=m_in[:, None] & k_in[None, :],
                    other=0.0)
        y = tl.load(Y + z * syz + rk[:, None] * syk + rn[None, :] * syn, mask=k_in[:, None] & n_in[None, :],
                    other=0.0)
        acc = _dot(x, y, acc, DT, PREC, INTERP)
    c_ptr = Cm + z * scz + rm[:, None] * scm + rn[None, :] * scn
    c_ok = m_in[:, None] & n_in[None, :]
    tl.store(c_ptr, tl.load(c_ptr, mask=c_ok, other=0.0) + acc, mask=c_ok)


@triton.jit
def leaf_fwd_kernel(X, A, F, G, O, V, r0, P, Tp, N, DV, C: tl.constexpr, BV: tl.constexpr,
                    INTERP: tl.constexpr):
    """One diagonal block R = [r0, r0 + C): s_R = X_R (f_R + gamma_R o_R), then o_R += A_RR s_R.

    X_R = (I - diag(gamma_R) A_RR)^{-1} and A_RR were computed for all blocks in parallel beforehand, so
    this sequential step is two C x C products per value tile. Grid (DV / BV, BH). O holds, on entry, the
    weighted sum over every earlier key (float32); V receives s at key positions P + r0 ...
    """
    pid_v = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    i = tl.arange(0, C)
    vv = pid_v * BV + tl.arange(0, BV)
    v_in = vv[None, :] < DV
    blk = bh * Tp * C + (r0 + i)[:, None] * C + i[None, :]  # [BH, Tp, C] storage of the C x C blocks
    x = tl.load(X + blk)
    a = tl.load(A + blk)
    g = tl.load(G + bh * Tp + r0 + i)
    rv = bh * Tp * DV + (r0 + i)[:, None] * DV + vv[None, :]
    o = tl.load(O + rv, mask=v_in, other=0.0)
    rhs = tl.load(F + rv, mask=v_in, other=0.0) + g[:, None] * o
    s = _dot(x, rhs, tl.zeros((C, BV), dtype=tl.float32), tl.float32, "ieee", INTERP)
    tl.store(V + bh * N * DV + (P + r0 + i)[:, None] * DV + vv[None, :], s, mask=v_in)
    tl.store(O + rv, _dot(a, s, o, tl.float32, "ieee", INTERP), mask=v_in)


@triton.jit
def leaf_bwd_kernel(X, Gd, ACC, G, U, W, r0, Tp, DV, C: tl.constexpr, BV: tl.constexpr, INTERP: tl.constexpr):
    """Transposed diagonal step: u_R = X_R^T (g_R + acc_R), w_R = gamma_R u_R. Grid (DV / BV, BH)."""
    pid_v = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    i = tl.arange(0, C)
    vv = pid_v * BV + tl.arange(0, BV)
    v_in = vv[None, :] < DV
    xt = tl.load(X + bh * Tp * C + (r0 + i)[None, :] * C + i[:, None])  # X_R transposed
    g = tl.load(G + bh * Tp + r0 + i)
    rv = bh * Tp * DV + (r0 + i)[:, None] * DV + vv[None, :]
    rhs = tl.load(Gd + rv, mask=v_in, other=0.0) + tl.load(ACC + rv, mask=v_in, other=0.0)
    u = _dot(xt, rhs, tl.zeros((C, BV), dtype=tl.float32), tl.float32, "ieee", INTERP)
    tl.store(U + rv, u, mask=v_in)
    tl.store(W + rv, g[:, None] * u, mask=v_in)
