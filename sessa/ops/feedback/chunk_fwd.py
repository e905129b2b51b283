"""Forward kernel of the chunked feedback solve (docs/equations.md §4): block forward substitution.

For each block R of C rows (absolute key positions [p0, p1)):
    logits of q_R against keys [0, p1) in key tiles (the last tile holds the in-block C x C part),
    softmax per tile + per-tile log-normaliser, tiles merged exactly (log-sum-exp weights),
    p_R   = sum_{j < p0} alpha_fb[R, j] s_j                 (all earlier blocks and the past)
    s_R   = (I - diag(gamma_R) A_in)^{-1} (f_R + gamma_R p_R)  (C x C unit-lower-triangular solve)
    o_R   = p_R + A_in s_R = (alpha_fb s)_R                 (saved for d gamma and the backward)
Memory is O(T * D + C * tile): no T x T tensor. Tensors here are [B, H, T, d] in the accumulation dtype.
"""

from __future__ import annotations

import torch

# Masked logits are a true -inf, so masking stays exact whatever the logit scale (a finite sentinel is
# overtaken once |scale * q . k| reaches it). A row of a tile with no visible key then has max -inf:
# `exp_lse` and the merge shift by 0 there instead (no inf - inf), and the row gets lse = -inf.
NEG = float("-inf")
TILE_ELEMENTS = 1 << 21  # logits elements per tile over the whole batch: bounds the transient memory


def tile_len(rows: int, batch_heads: int) -> int:
    """Keys (or rows) per tile so that rows x tile x B x H stays near TILE_ELEMENTS, at least `rows`."""
    return max(rows, TILE_ELEMENTS // max(1, rows * batch_heads))


def key_tiles(p1: int, tile: int) -> list[tuple[int, int]]:
    """Tiles [j0, j1) covering keys [0, p1), aligned to end at p1 (so the first one holds the block)."""
    out = []
    j1 = p1
    while j1 > 0:
        j0 = max(0, j1 - tile)
        out.append((j0, j1))
        j1 = j0
    return out


def causal_bias(C: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[C, C] additive bias: -inf where in-block key index >= row index (strictly causal)."""
    idx = torch.arange(C, device=device)
    return torch.zeros(C, C, dtype=dtype, device=device).masked_fill(idx[None, :] >= idx[:, None], NEG)


def block_logits(
    q_blk: torch.Tensor,
    keys: torch.Tensor,
    j0: int,
    j1: int,
    p0: int,
    key_bias: torch.Tensor | None,
    cbias: torch.Tensor,
) -> torch.Tensor:
    """Scaled logits [B, H, c, j1 - j0] of a row block (absolute rows p0..) against keys [j0, j1), masked."""
    logits = q_blk @ keys[:, :, j0:j1].transpose(-1, -2)
    if key_bias is not None:
        logits += key_bias[:, :, :, j0:j1]
    if j1 > p0:  # this tile holds the in-block keys [p0, j1): strictly causal inside the block
        c = j1 - p0
        logits[..., p0 - j0 :] += cbias[: q_blk.shape[2], :c]
    return logits


def exp_lse(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(u, l, lse): u = exp(logits - rowmax) in place, l = sum u, lse = rowmax + log l.

    Callers divide the small products (u @ values, the C x C block) by l instead of normalising the whole
    c x tile matrix: two fewer passes over the largest tensor of the forward.
    """
    m = logits.amax(dim=-1, keepdim=True)
    u = logits.sub_(_finite_or_zero(m)).exp_()  # a fully masked row: exp(-inf - 0) = 0
    l = u.sum(dim=-1, keepdim=True)
    return u, l.clamp_min(torch.finfo(l.dtype).tiny), m + l.log()  # lse = -inf on such a row; u / l = 0


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    """x with -inf replaced by 0: the safe shift for rows whose log-normaliser is -inf (nothing visible)."""
    return torch.where(x == NEG, torch.zeros_like(x), x)


def chunk_forward(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    f: torch.Tensor,
    gamma: torch.Tensor,
    *,
    n_past: int,
    chunk_size: int,
    key_bias: torch.Tensor | None,
    row_ok: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill values[:, :, n_past:] with s in place; return (o [B, H, T, dv], lse [B, H, T, 1]).

    q: [B, H, T, dk] already multiplied by the logit scale. keys: [B, H, Tp + T, dk] (past then new).
    values: [B, H, Tp + T, dv] with the past s filled in. f: [B, H, T, dv]. gamma: [B, H, T, 1].
    key_bias: [B, 1, 1, Tp + T] (0 or -inf) or None. row_ok: [B, 1, T, 1] bool or None.
    lse is +inf on rows that read nothing, so exp(logit - lse) = 0 there in the backward.
    """
    B, H, T, _ = q.shape
    C = min(chunk_size, T)
    tile = tile_len(C, B * H)
    cbias = causal_bias(C, q.dtype, q.device)
    o = torch.empty_like(f)
    lse_all = torch.empty(B, H, T, 1, dtype=q.dtype, device=q.device)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    for r0 in range(0, T, C):
        r1 = min(r0 + C, T)
        c = r1 - r0
        p0, p1 = n_past + r0, n_past + r1
        q_blk = q[:, :, r0:r1]
        a_in = p = lse = lse_blk = None
        for j0, j1 in key_tiles(p1, tile):  # the first tile holds the block itself
            u, l, lse_t = exp_lse(block_logits(q_blk, keys, j0, j1, p0, key_bias, cbias))
            if j1 > p0:  # block tile: split off the in-block weights, PV over the earlier keys only
                a_in, lse, lse_blk = u[..., p0 - j0 :] / l, lse_t, lse_t
                p = (u[..., : p0 - j0] @ values[:, :, j0:p0]).div_(l) if p0 > j0 else None
                continue
            # exact online merge of per-tile softmaxes (FlashAttention): rescale by exp(lse_i - lse)
            pv = (u @ values[:, :, j0:j1]).div_(l)
            new = torch.logaddexp(lse, lse_t)
            shift = _finite_or_zero(new)  # both -inf: every weight below is exp(-inf) = 0
            pv *= torch.exp(lse_t - shift)
            p = pv if p is None else pv.add_(p * torch.exp(lse - shift))
            lse = new
        if lse is not lse_blk:  # the in-block weights were normalised over the block tile only
            a_in = a_in * torch.exp(lse_blk - _finite_or_zero(lse))
        # rows with no real key (t = 0, padding) read nothing; applied always (no host sync on GPU)
        keep = lse > NEG
        if row_ok is not None:
            keep = keep & row_ok[:, :, r0:r1]
        a_in = a_in * keep
        p = p * keep if p is not None else None
        lse = lse.masked_fill(~keep, float("inf"))
        g = gamma[:, :, r0:r1]
        rhs = f[:, :, r0:r1] if p is None else f[:, :, r0:r1] + g * p
        m = eye[:c, :c] - g * a_in
        s_blk = torch.linalg.solve_triangular(m, rhs, upper=False, unitriangular=True)
        values[:, :, p0:p1] = s_blk
        o_blk = a_in @ s_blk
        o[:, :, r0:r1] = o_blk if p is None else o_blk + p
        lse_all[:, :, r0:r1] = lse
    return o, lse_all
