"""Fixed-routing influence Jacobians (docs/analysis.md).

Freeze the routing a module realises on an input, then read entries of the resulting linear map:
    Sessa      ds/df = (I - diag(gamma) alpha_fb)^{-1}       (one head: the same T x T matrix for every channel)
    attention  df_t/dv_tau = alpha_fwd[t, tau] I
    SSM        dy_t/dx_tau = C_t (prod_{r=tau+1..t} A_r) B_tau  (diagonal A; Mamba2 via its own scan inputs)
A column (all targets of one source) of the Sessa inverse is ONE feedback solve with f = e_source; a row (all
sources of one target) is ONE backward (transposed) solve, i.e. a VJP through the real op. No T x T inverse.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from sessa.ops import DEFAULT_CHUNK_SIZE, feedback_solve
from sessa.utils.checks import check_int, check_tensor


def _one_of(source: int | None, target: int | None) -> None:
    if (source is None) == (target is None):
        raise ValueError("pass exactly one of source= (a column: all targets t >= source) or target= (a row)")


def feedback_influence(
    q_b: torch.Tensor,
    k_b: torch.Tensor,
    gamma: torch.Tensor,
    *,
    source: int | None = None,
    target: int | None = None,
    scale: float | None = None,
    impl: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Entries of M = (I - diag(gamma) alpha_fb)^{-1} for routing frozen at (q_b, k_b, gamma): [B, T, H].

    source=tau: out[:, t] = M[t, tau] (zero for t < tau), by one forward solve with f = e_tau.
    target=t:   out[:, tau] = M[t, tau] (zero for tau > t), by one transposed solve (a VJP of s_t).
    """
    check_tensor("q_b", q_b, ndim=4, floating=True)
    check_tensor("gamma", gamma, ndim=3, floating=True)
    _one_of(source, target)
    B, T, H, _ = q_b.shape
    q_b, k_b, gamma = q_b.detach(), k_b.detach(), gamma.detach()  # fixed routing: no gradient through it
    out = q_b.new_zeros(B, T, H)
    kw = {"scale": scale, "impl": impl, "chunk_size": chunk_size}
    if source is not None:
        check_int("source", source, lo=0, hi=T - 1)
        # the full length: rows after the source still normalise their softmax over the earlier keys
        f = q_b.new_zeros(B, T, H, 1)
        f[:, source] = 1.0
        with torch.no_grad():
            s = feedback_solve(q_b, k_b, f, gamma, **kw)
        return s[..., 0]
    check_int("target", target, lo=0, hi=T - 1)
    n = target + 1  # later positions cannot influence s_target
    f = q_b.new_zeros(B, n, H, 1, requires_grad=True)
    with torch.enable_grad():
        s = feedback_solve(q_b[:, :n], k_b[:, :n], f, gamma[:, :n], **kw)
        (grad,) = torch.autograd.grad(s[:, target].sum(), f)
    out[:, :n] = grad[..., 0]
    return out


def mixer_feedback_influence(
    mixer: nn.Module,
    a_bar: torch.Tensor,
    *,
    source: int | None = None,
    target: int | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Fixed-routing ds_t/df_tau of a SessaMixer on input a_bar [B, T, D] -> [B, T] (one feedback head)."""
    if not hasattr(mixer, "feedback_inputs"):
        raise TypeError(f"mixer must be a SessaMixer (with feedback_inputs), got {type(mixer).__name__}")
    if not getattr(mixer, "feedback", True):
        raise ValueError("this mixer has feedback=False: s = f, its feedback influence is the identity")
    check_tensor("a_bar", a_bar, ndim=3, floating=True)
    if a_bar.shape[-1] != mixer.d_model:
        raise ValueError(f"a_bar must have width d_model = {mixer.d_model}, got {a_bar.shape[-1]}")
    with torch.no_grad():
        q_b, k_b, gamma = mixer.feedback_inputs(a_bar)
    out = feedback_influence(
        q_b, k_b, gamma, source=source, target=target, scale=1.0 / math.sqrt(mixer.d_model),
        impl=impl or mixer.impl, chunk_size=mixer.chunk_size,
    )
    return out[..., 0]


def attention_qk(mixer: nn.Module, a_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-branch q [B, T, H, d] and k [B, T, Hkv, d] (RoPE applied) of a SessaMixer or AttentionMixer."""
    if not hasattr(mixer, "forward_qkv"):
        raise TypeError(f"mixer must be an attention-style mixer with 'forward_qkv', got {type(mixer).__name__}")
    check_tensor("a_bar", a_bar, ndim=3, floating=True)
    q, k, _ = mixer.forward_qkv(a_bar, torch.arange(a_bar.shape[1], device=a_bar.device))
    return q, k


def attention_influence(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    source: int | None = None,
    target: int | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """alpha_fwd[t, tau] of causal softmax attention (self included), per query head: [B, T, H].

    source=tau: one attention call with values e_tau gives the column; target=t: the softmax row of q_t.
    """
    check_tensor("q", q, ndim=4, floating=True)
    check_tensor("k", k, ndim=4, floating=True)
    _one_of(source, target)
    B, T, H, d = q.shape
    if k.shape[0] != B or k.shape[1] != T or k.shape[3] != d or H % k.shape[2]:
        raise ValueError(f"k must be [B, T, Hkv, d] with Hkv dividing H, got q {tuple(q.shape)}, k {tuple(k.shape)}")
    k = k.repeat_interleave(H // k.shape[2], dim=2)  # GQA: query head h reads kv head h // (H / Hkv)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    q, k = q.detach(), k.detach()
    out = q.new_zeros(B, T, H)
    if source is not None:
        check_int("source", source, lo=0, hi=T - 1)
        v = q.new_zeros(B, H, T, 1)
        v[:, :, source] = 1.0
        with torch.no_grad():
            col = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v, is_causal=True, scale=scale)
        return col[..., 0].transpose(1, 2).contiguous()
    check_int("target", target, lo=0, hi=T - 1)
    logits = torch.einsum("bhd,bjhd->bhj", q[:, target], k[:, : target + 1]) * scale
    out[:, : target + 1] = torch.softmax(logits, dim=-1).transpose(1, 2)
    return out


def mixer_attention_influence(
    mixer: nn.Module, a_bar: torch.Tensor, *, source: int | None = None, target: int | None = None
) -> torch.Tensor:
    """Fixed-routing df_t/dv_tau (= alpha_fwd[t, tau]) of a mixer's forward attention on a_bar: [B, T, H]."""
    with torch.no_grad():
        q, k = attention_qk(mixer, a_bar)
    return attention_influence(q, k, source=source, target=target)


def ssm_impulse_response(
    log_decay: torch.Tensor, b_in: torch.Tensor, c_out: torch.Tensor, *, source: int
) -> torch.Tensor:
    """C_t (prod_{r=source+1..t} A_r) B_source for a diagonal SSM, A_r = exp(log_decay_r): [B, T].

    log_decay, b_in, c_out: [B, T, N]. h_t = A_t h_{t-1} + B_t x_t, y_t = C_t . h_t (Mamba: log A = dt * A).
    """
    for name, x in (("log_decay", log_decay), ("b_in", b_in), ("c_out", c_out)):
        check_tensor(name, x, ndim=3, floating=True)
    if not (log_decay.shape == b_in.shape == c_out.shape):
        raise ValueError(
            f"log_decay, b_in, c_out must share a shape [B, T, N], got {tuple(log_decay.shape)}, "
            f"{tuple(b_in.shape)}, {tuple(c_out.shape)}"
        )
    B, T, N = log_decay.shape
    check_int("source", source, lo=0, hi=T - 1)
    # log of prod_{r=source+1..t} A_r as a cumulative sum, in float64 so long products stay accurate
    ld = log_decay[:, source + 1 :].double()
    cum = torch.cat([ld.new_zeros(B, 1, N), ld.cumsum(1)], dim=1)  # [B, T - source, N]
    resp = (c_out[:, source:].double() * torch.exp(cum) * b_in[:, source : source + 1].double()).sum(-1)
    out = log_decay.new_zeros(B, T, dtype=torch.float64)
    out[:, source:] = resp
    return out.to(log_decay.dtype)


def lag_profile(values: torch.Tensor, *, source: int | None = None, target: int | None = None) -> torch.Tensor:
    """Re-index a column (source) or row (target) [B, T, ...] by lag l = t - tau: [B, L + 1, ...]."""
    check_tensor("values", values)
    _one_of(source, target)
    T = values.shape[1]
    if source is not None:
        return values[:, check_int("source", source, lo=0, hi=T - 1) :]
    return values[:, : check_int("target", target, lo=0, hi=T - 1) + 1].flip(1)


@contextlib.contextmanager
def _spy_mamba2_scan(store: dict) -> Iterator[None]:
    """Record the arguments and output of transformers' mamba2_chunk_scan while the block runs."""
    from transformers.models.mamba2 import modeling_mamba2 as hf

    original = hf.mamba2_chunk_scan

    def spy(hidden_states, dt, A, B, C, chunk_size, D=None, dt_bias=None, initial_states=None,
            dt_softplus=False, dt_limit=(0.0, float("inf")), return_final_states=False, **kwargs):
        out = original(hidden_states, dt, A, B, C, chunk_size, D=D, dt_bias=dt_bias, initial_states=initial_states,
                       dt_softplus=dt_softplus, dt_limit=dt_limit, return_final_states=return_final_states, **kwargs)
        store.update(x=hidden_states, dt=dt, A=A, B=B, C=C, D=D, dt_bias=dt_bias, dt_softplus=dt_softplus,
                     dt_limit=dt_limit, y=out[0] if isinstance(out, tuple) else out)
        return out

    hf.mamba2_chunk_scan = spy
    try:
        yield
    finally:
        hf.mamba2_chunk_scan = original


def mamba2_impulse_response(mixer: nn.Module, a_bar: torch.Tensor, *, source: int) -> tuple[torch.Tensor, dict]:
    """Fixed-routing SSM impulse C_t (prod exp(dt_r A)) dt_source B_source of a Mamba2 mixer, per SSM head.

    Runs the real module (transformers' Mamba2Mixer, or our wrapper around it) on a_bar [B, T, D] and reads
    dt, A, B, C from its own scan call, so conv, activation and dt limits are exactly the module's.
    Returns ([B, T, H_ssm] with zeros before the source, the captured tensors). The skip term D x_t is not
    part of the impulse (it only acts at lag 0).
    """
    inner = getattr(mixer, "mamba", mixer)
    if type(inner).__name__ != "Mamba2Mixer":
        raise TypeError(f"mixer must be a Mamba2 mixer (transformers Mamba2Mixer), got {type(mixer).__name__}")
    check_tensor("a_bar", a_bar, ndim=3, floating=True)
    store: dict = {}
    with torch.no_grad(), _spy_mamba2_scan(store):
        mixer(a_bar)
    if not store:
        raise RuntimeError("the Mamba2 mixer did not call mamba2_chunk_scan (a fused kernel path?); use eval mode")
    dt = store["dt"].double()
    if store["dt_bias"] is not None:
        dt = dt + store["dt_bias"].double()
    if store["dt_softplus"]:
        dt = F.softplus(dt)
    dt = dt.clamp(min=store["dt_limit"][0], max=store["dt_limit"][1])  # [B, T, H]
    B_, T, H = dt.shape
    rep = H // store["B"].shape[2]  # groups share B and C
    b = store["B"].double().repeat_interleave(rep, dim=2)  # [B, T, H, N]
    c = store["C"].double().repeat_interleave(rep, dim=2)
    log_decay = (dt * store["A"].double())[..., None].expand_as(b)
    fold = lambda z: z.permute(0, 2, 1, 3).reshape(B_ * H, T, -1)  # noqa: E731 - heads into the batch
    resp = ssm_impulse_response(fold(log_decay), fold(dt[..., None] * b), fold(c), source=source)
    return resp.view(B_, H, T).transpose(1, 2).contiguous(), store
