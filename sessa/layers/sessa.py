"""The Sessa mixer and layer (docs/equations.md §1-2).

    f        = causal multi-head softmax attention of a_bar           (the forward branch)
    s        = (I - diag(gamma) alpha_fb)^{-1} f                      (attention inside the feedback loop)
    alpha_fb = strictly causal single-head softmax of (q_b . k_b) / sqrt(D)
    gamma_t  = gamma_max * tanh(b_gamma + w_gamma . a_bar_t)
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import torch
from torch import nn

from sessa.layers.attention import AttentionMixer
from sessa.layers.block import GatedBlock
from sessa.layers.cache import SessaLayerCache
from sessa.ops import DEFAULT_CHUNK_SIZE, feedback_solve
from sessa.ops.utils import accum_dtype, causal_allowed
from sessa.utils.checks import (
    check_bool,
    check_cu_seqlens,
    check_equal,
    check_float,
    check_gamma_max,
    check_hidden,
    check_in_range,
    check_mask,
)


class SessaMixer(AttentionMixer):
    """s_t = f_t + gamma_t * sum_{j<t} alpha_fb[t, j] s_j, with f = causal MHA(a_bar) (the AttentionMixer)."""

    # what the mixer table needs (sessa.layers.mixers): forward's extra arguments, mixer_options, matching
    summary: ClassVar[str] = "Sessa: causal attention inside a feedback loop, s = f + diag(gamma) A_fb s"
    accepts: ClassVar[frozenset[str]] = frozenset({"attention_mask", "cu_seqlens", "cache"})
    options: ClassVar[dict[str, Any]] = {}
    match_option: ClassVar[str | None] = None

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        n_kv_heads: int | None = None,
        gamma_max: float = 0.999,
        rope: bool = True,
        *,
        rope_theta: float = 10000.0,
        feedback: bool = True,
        impl: str = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        gamma_max = check_gamma_max(gamma_max)
        feedback = check_bool("feedback", feedback)
        # forward branch: q, k, v, o projections, RoPE and SDPA come from AttentionMixer; fb_proj is
        # created between v and o (build_before_output) so a seed draws the authors' initial weights
        super().__init__(d_model, n_heads, n_kv_heads, rope, rope_theta=rope_theta)
        self.gamma_max, self.feedback = gamma_max, feedback
        self.impl, self.chunk_size = impl, chunk_size
        self.gamma_bias = nn.Parameter(torch.tensor(1.0))
        self.gamma_proj = nn.Linear(d_model, 1, bias=False)

    def build_before_output(self) -> None:
        """Feedback branch: one head of full width D, no RoPE; rows [0, D) give q_b, [D, 2D) give k_b."""
        self.fb_proj = nn.Linear(self.d_model, 2 * self.d_model)

    @classmethod
    def from_config(cls, config: Any) -> SessaMixer:
        """SessaConfig(mixer="sessa"), the default: every field of the config except mixer_options (none)."""
        return cls(
            config.d_model, config.n_heads, config.n_kv_heads, config.gamma_max, config.rope,
            rope_theta=config.rope_theta, feedback=config.feedback, impl=config.impl, chunk_size=config.chunk_size,
        )

    def feedback_inputs(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q_b, k_b [B, T, 1, D] and gamma [B, T, 1] (float32 or float64), |gamma| <= gamma_max."""
        q_b, k_b = self.fb_proj(a).unsqueeze(2).chunk(2, dim=-1)
        z = self.gamma_bias + self.gamma_proj(a)
        # gamma in float32 at least: in bf16 a saturated gamma_max * tanh rounds to exactly 1.0, and
        # |gamma| <= gamma_max < 1 is what keeps the solve bounded
        gamma = self.gamma_max * torch.tanh(z.to(accum_dtype(z.dtype)))
        check_in_range("gamma", gamma, -self.gamma_max, self.gamma_max)
        return q_b, k_b, gamma

    def forward(
        self,
        a: torch.Tensor,
        *,
        cache: SessaLayerCache | None = None,
        use_cache: bool = False,
        attention_mask: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ):
        """a_bar [B, T, D] -> s [B, T, D]; with a cache or use_cache -> (s, cache), updated in place.

        cache continues earlier tokens (T = 1 decode, T > 1 chunked prefill); attention_mask [B, past + T]
        (1 = real) hides padded tokens in both branches and RoPE counts real tokens only; cu_seqlens [N + 1]
        packs N sequences along T (B = 1): no attention across boundaries, positions restart. A given mask
        is always applied (reading whether it is all ones would wait for the device): pass None when no
        token is padded to take the faster unmasked path.
        """
        check_hidden("a", a, self.d_model, self.q_proj.weight.dtype)
        check_bool("use_cache", use_cache)
        B, T, _ = a.shape
        if cu_seqlens is not None:
            return self._forward_packed(a, cu_seqlens, cache, use_cache, attention_mask)
        if cache is None and not use_cache and attention_mask is None:
            return self._forward_plain(a)
        if cache is not None or use_cache:
            if T == 0:
                raise ValueError("a must hold at least one new token (T >= 1) when a cache is used")
            cache = self._layer_cache(cache, a)
        n_past = 0 if cache is None else cache.seq_len
        past_mask = None if cache is None else cache.attention_mask
        mask = full_mask(attention_mask, B, n_past, T, past_mask, a.device)
        if mask is None:  # no padding anywhere: positions are plain counts
            positions = torch.arange(n_past, n_past + T, device=a.device)
        else:  # position = number of real tokens before it in its row
            new = mask[:, n_past:].long()
            base = cache.next_positions[:, None] if cache is not None else 0
            positions = base + new.cumsum(1) - new
        q, k, v = self.forward_qkv(a, positions)
        if cache is None:
            return self._mix(a, q, k, v, mask, None, 0, T)
        cache.append_kv(k, v)
        try:
            s = self._mix(a, q, cache.k, cache.v, mask, cache, n_past, T)  # past + new K/V, no copy
        except Exception:
            cache.truncate(n_past)  # a failed call (e.g. a NaN input) leaves the cache as it was
            raise
        cache.append_mask(None if mask is None else mask[:, n_past:], T)
        return s, cache

    def _mix(self, a, q, k, v, mask, cache, n_past: int, T: int) -> torch.Tensor:
        """f over all visible keys, then the feedback solve continuing the cached (k_b, s); appends them."""
        f = self.attend(q, k, v, forward_mask(mask, n_past, T, a.device), causal=n_past == 0)
        if not self.feedback:
            return f
        state = (cache.k_b, cache.s) if cache is not None and n_past > 0 else None
        s, k_b = self._solve(a, f, initial_state=state, attention_mask=mask)
        if cache is not None:
            cache.append_feedback(k_b, s.unsqueeze(2))
        return s

    def _solve(self, a: torch.Tensor, f: torch.Tensor, **solve_kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """s = (I - diag(gamma) alpha_fb)^{-1} f for f [B, T, D]; returns (s [B, T, D], k_b [B, T, 1, D])."""
        q_b, k_b, gamma = self.feedback_inputs(a)
        s = feedback_solve(
            q_b, k_b, f.unsqueeze(2), gamma,
            scale=1.0 / math.sqrt(self.d_model), impl=self.impl, chunk_size=self.chunk_size, **solve_kwargs,
        )
        return s.squeeze(2), k_b

    def _forward_plain(self, a: torch.Tensor) -> torch.Tensor:
        """The training path: one causal sequence per row, positions 0..T-1."""
        positions = torch.arange(a.shape[1], device=a.device)
        f = self.attend(*self.forward_qkv(a, positions))
        return self._solve(a, f)[0] if self.feedback else f

    def _forward_packed(self, a, cu_seqlens, cache, use_cache, attention_mask) -> torch.Tensor:
        """N sequences packed along T (B = 1): per-segment causal attention, RoPE restarting per segment."""
        if cache is not None or use_cache or attention_mask is not None:
            raise ValueError("cu_seqlens cannot be combined with cache, use_cache or attention_mask")
        if a.shape[0] != 1:
            raise ValueError(f"with cu_seqlens the batch must be packed into B = 1, got B = {a.shape[0]}")
        T = a.shape[1]
        bounds = check_cu_seqlens(cu_seqlens, T)
        cu = torch.tensor(bounds, device=a.device)
        lengths = cu[1:] - cu[:-1]
        starts = torch.repeat_interleave(cu[:-1], lengths, output_size=T)
        positions = torch.arange(T, device=a.device) - starts
        q, k, v = self.forward_qkv(a, positions)
        segments = [(i, j) for i, j in zip(bounds[:-1], bounds[1:], strict=True) if j > i]
        parts = [self.attend(q[:, i:j], k[:, i:j], v[:, i:j]) for i, j in segments]
        f = torch.cat(parts, dim=1) if parts else a.new_zeros(a.shape)
        return self._solve(a, f, cu_seqlens=cu)[0] if self.feedback else f

    def init_cache(self, batch_size: int, *, dtype: torch.dtype, device: torch.device | str | None = None):
        """An empty per-layer cache for this mixer (the LM asks every mixer for its own cache type)."""
        return SessaLayerCache(
            batch_size, self.n_kv_heads, self.head_dim, self.d_model, dtype=dtype, device=device,
            feedback=self.feedback,
        )

    def _layer_cache(self, cache: object, a: torch.Tensor) -> SessaLayerCache:
        """The given cache after checking it fits, or a new empty one."""
        if cache is None:
            return self.init_cache(a.shape[0], dtype=a.dtype, device=a.device)
        if not isinstance(cache, SessaLayerCache):
            raise TypeError(f"cache must be a SessaLayerCache (one layer), got {type(cache).__name__}")
        cache.check_compatible(a.shape[0], self.n_kv_heads, self.head_dim, self.d_model, self.feedback)
        return cache


def full_mask(
    attention_mask: object, B: int, n_past: int, T: int, past_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """Bool [B, n_past + T] mask of past and new tokens, or None when none is given (now or in the cache)."""
    if attention_mask is None:
        if past_mask is None:
            return None
        return torch.cat([past_mask, torch.ones(B, T, dtype=torch.bool, device=past_mask.device)], dim=1)
    m = check_mask("attention_mask", attention_mask, (B, n_past + T)).to(device)
    if n_past:
        cached = past_mask if past_mask is not None else torch.ones(B, n_past, dtype=torch.bool)
        check_equal("attention_mask[:, :past]", m[:, :n_past], cached, "must equal the mask of the cached tokens")
    return m


def forward_mask(mask: torch.Tensor | None, n_past: int, T: int, device: torch.device) -> torch.Tensor | None:
    """SDPA boolean mask [B|1, 1, T, n_past + T] for the forward branch, or None (plain causal / decode)."""
    if mask is None and (n_past == 0 or T == 1):
        return None
    return causal_allowed(T, n_past, mask, strict=False, device=device)[:, None]


class SessaLayer(GatedBlock):
    """y = x + W_out(s * g): the gated block of docs/equations.md §1 around a SessaMixer."""

    mixer_class: type[SessaMixer] = SessaMixer  # a subclass may swap in a SessaMixer subclass

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        n_kv_heads: int | None = None,
        gamma_max: float = 0.999,
        rope: bool = True,
        ln_eps: float = 1e-5,
        **mixer_kwargs,
    ) -> None:
        ln_eps = check_float("ln_eps", ln_eps, lo=0.0, lo_open=True)
        # a factory: the block builds it between W_in and W_out (the authors' order of initial draws)
        mixer = functools.partial(self.mixer_class, d_model, n_heads, n_kv_heads, gamma_max, rope, **mixer_kwargs)
        super().__init__(d_model, mixer, ln_eps)
