"""One decoding step of the feedback solve on GPU: s = f + gamma * softmax(scale * k_past q) s_past.

The new token reads only the cached past (strictly causal), so the step is single-query attention over
the cache with head width D. Two memory-bound Triton passes read the cache in its own dtype and layout
(no float32 copy, no concatenation): `logits_kernel` streams k_past once (float32 dot products), a
float32 softmax over the n logits runs in torch, and `weighted_sum_kernel` streams s_past once, split over
key ranges so that a batch of one still fills the GPU (the partial sums are added in float32). The
traffic is that of a KV-cache attention step over one head of width D, and nothing syncs with the host.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

KEYS_PER_SPLIT = 512  # keys summed by one program of the weighted sum


@triton.jit
def logits_kernel(Q, K, OUT, n, H, DK, sk_b, sk_n, sk_h, scale, BN: tl.constexpr, BK: tl.constexpr):
    """OUT[bh, j] = scale * q_bh . k_past[b, j, h] in float32. Grid (n / BN, B * H)."""
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b, h = bh // H, bh % H
    j = pid * BN + tl.arange(0, BN)
    j_in = j < n
    acc = tl.zeros((BN,), dtype=tl.float32)
    for d0 in range(0, DK, BK):
        d = d0 + tl.arange(0, BK)
        d_in = d < DK
        q = tl.load(Q + bh * DK + d, mask=d_in, other=0.0).to(tl.float32)
        k = tl.load(K + b * sk_b + h * sk_h + j[:, None] * sk_n + d[None, :], mask=j_in[:, None] & d_in[None, :],
                    other=0.0).to(tl.float32)
        acc += tl.sum(k * q[None, :], axis=1)
    tl.store(OUT + bh * n + j, acc * scale, mask=j_in)


@triton.jit
def weighted_sum_kernel(Wt, S, OUT, n, H, DV, BHn, ss_b, ss_n, ss_h, per_split,
                        BN: tl.constexpr, BV: tl.constexpr):
    """OUT[split, bh, v] = sum over the split's keys of w[bh, j] s_past[b, j, h, v]. Grid (DV / BV, splits, BH)."""
    pid_v = tl.program_id(0)
    split = tl.program_id(1)
    bh = tl.program_id(2).to(tl.int64)
    b, h = bh // H, bh % H
    v = pid_v * BV + tl.arange(0, BV)
    v_in = v < DV
    acc = tl.zeros((BV,), dtype=tl.float32)
    j_end = tl.minimum(split * per_split + per_split, n)
    for j0 in range(split * per_split, j_end, BN):
        j = j0 + tl.arange(0, BN)
        j_in = j < j_end
        w = tl.load(Wt + bh * n + j, mask=j_in, other=0.0)
        s = tl.load(S + b * ss_b + h * ss_h + j[:, None] * ss_n + v[None, :], mask=j_in[:, None] & v_in[None, :],
                    other=0.0).to(tl.float32)
        acc += tl.sum(w[:, None] * s, axis=0)
    tl.store(OUT + split * BHn * DV + bh * DV + v, acc, mask=v_in)


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def triton_decode_step(q, f, gamma, k_past, s_past, attention_mask, scale: float) -> torch.Tensor:
    """s [B, 1, H, dv] (f's dtype) for one new token after n cached ones; no autograd (inference only).

    q, f: [B, 1, H, d]; gamma [B, 1, H]; k_past, s_past: [B, n, H, d] views of the cache (any batch / time
    strides); attention_mask [B, n + 1] or None.
    """
    B, _, H, dk = q.shape
    dv, n = f.shape[-1], k_past.shape[1]
    k_past, s_past = _last_dim_contiguous(k_past), _last_dim_contiguous(s_past)
    qh = q[:, 0].reshape(B * H, dk).float().contiguous()
    logits = torch.empty(B * H, n, dtype=torch.float32, device=q.device)
    bk = min(128, triton.next_power_of_2(dk))
    logits_kernel[(triton.cdiv(n, 64), B * H)](
        qh, k_past, logits, n, H, dk, k_past.stride(0), k_past.stride(1), k_past.stride(2), scale, BN=64, BK=bk
    )
    logits = logits.view(B, H, n)
    if attention_mask is not None:  # padded past keys are never read; a padded new token reads nothing
        m = attention_mask.to(device=q.device, dtype=torch.bool)
        ok = (m[:, :n] & m[:, n:])[:, None, :]
        weights = torch.softmax(logits.masked_fill(~ok, torch.finfo(torch.float32).min), dim=-1) * ok
    else:
        weights = torch.softmax(logits, dim=-1)
    splits = triton.cdiv(n, KEYS_PER_SPLIT)
    partial = torch.empty(splits, B * H, dv, dtype=torch.float32, device=q.device)
    bv = min(64, triton.next_power_of_2(dv))
    weighted_sum_kernel[(triton.cdiv(dv, bv), splits, B * H)](
        weights.reshape(B * H, n).contiguous(), s_past, partial, n, H, dv, B * H,
        s_past.stride(0), s_past.stride(1), s_past.stride(2), KEYS_PER_SPLIT, BN=32, BV=bv,
    )
    o = partial.sum(0).view(B, 1, H, dv)
    return (f.float() + gamma.float()[..., None] * o).to(f.dtype)
