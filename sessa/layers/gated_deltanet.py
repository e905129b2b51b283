"""Gated DeltaNet mixer baseline: the transformers Qwen3-Next Gated DeltaNet module inside the same gated block.

    [q, k, v, z] = W_qkvz a_bar,  [b, a] = W_ba a_bar;  q, k, v = SiLU(causal depthwise conv(q, k, v))
    q, k = l2norm(q), l2norm(k);  beta_t = sigmoid(b_t),  g_t = -exp(A_log) softplus(a_t + dt_bias)  (per head)
    S_t = exp(g_t) S_{t-1} + beta_t k_t (v_t - exp(g_t) S_{t-1}^T k_t)^T,   o_t = S_t^T q_t / sqrt(d_k)
    s = W_out(RMSNorm(o) * SiLU(z))                                          (S_t: a d_k x d_v state per head)

We do not write the recurrence ourselves: the module is
`transformers.models.qwen3_next.modeling_qwen3_next.Qwen3NextGatedDeltaNet` with its pure-PyTorch chunked gated
delta rule (and the token-by-token rule for cached decoding); this file maps our options onto its config,
validates them, and keeps its conv / recurrent state in our cache. With the `flash-linear-attention` and
`causal-conv1d` packages installed (CUDA only), transformers runs their kernels instead.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn

from sessa.layers.cache import LayerCache
from sessa.layers.hf_kernels import note_cuda_fallback, quiet_fallback_notes
from sessa.layers.sessa import full_mask
from sessa.utils.checks import check_bool, check_equal, check_hidden, check_int, debug_checks_enabled

# options accepted in SessaConfig.mixer_options, with defaults suited to small models
GATED_DELTANET_DEFAULTS: dict[str, Any] = {
    "num_heads": 2,  # query/key heads (= value heads)
    "head_dim": None,  # query/key head width d_k; None: d_model // num_heads (key width = d_model, as Qwen3-Next)
    "head_v_dim": None,  # value head width d_v; None: 2 * head_dim (value width = 2 * key width, as Qwen3-Next)
    "conv_kernel": 4,  # causal depthwise conv over q, k, v
    "chunk_size": 16,  # chunk of the torch chunked scan: 16 was fastest on CPU at T ~ 100-170 (transformers: 64)
}


def gated_deltanet_options(d_model: int, options: dict[str, Any] | None) -> dict[str, int]:
    """Options over GATED_DELTANET_DEFAULTS, checked, with head_dim and head_v_dim filled in."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(GATED_DELTANET_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown gated_deltanet mixer_options {unknown}; allowed: {sorted(GATED_DELTANET_DEFAULTS)}")
    opts = {**GATED_DELTANET_DEFAULTS, **options}
    check_int("d_model", d_model, lo=1)
    check_int("mixer_options['num_heads']", opts["num_heads"], lo=1)
    if opts["head_dim"] is None:
        if d_model % opts["num_heads"]:
            raise ValueError(f"mixer_options['num_heads'] ({opts['num_heads']}) must divide d_model ({d_model}) "
                             "when head_dim is not given")
        opts["head_dim"] = d_model // opts["num_heads"]
    if opts["head_v_dim"] is None:
        opts["head_v_dim"] = 2 * check_int("mixer_options['head_dim']", opts["head_dim"], lo=1)
    for name, value in opts.items():
        check_int(f"mixer_options[{name!r}]", value, lo=1)
    return opts


# transformers' fallback notes of these functions are dropped (sessa.layers.hf_kernels)
_TORCH_PATH = ("chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", "causal_conv1d_fn",
               "causal_conv1d_update")


def gated_deltanet_module_class() -> type[nn.Module]:
    """transformers' Qwen3NextGatedDeltaNet with a reset_parameters for the parameters it holds itself (built on
    first use, so that importing this file does not import transformers)."""
    cls = globals().get("GatedDeltaNetModule")
    if cls is not None:
        return cls
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet

    class GatedDeltaNetModule(Qwen3NextGatedDeltaNet):
        """The transformers module unchanged, plus reset_parameters: the Hugging Face classes call it to give
        weights a checkpoint lacks their initial values (its Linear, conv and norm submodules reset their own)."""

        @torch.no_grad()
        def reset_parameters(self) -> None:
            """dt_bias = 1 and A_log = log U(0.01, 16), as the constructor draws them."""
            from transformers import initialization as init  # skips weights a checkpoint has already loaded

            init.ones_(self.dt_bias)
            init.copy_(self.A_log, torch.empty_like(self.A_log, dtype=torch.float32).uniform_(0.01, 16).log_())

    GatedDeltaNetModule.__module__, GatedDeltaNetModule.__qualname__ = __name__, "GatedDeltaNetModule"
    globals()["GatedDeltaNetModule"] = GatedDeltaNetModule
    return GatedDeltaNetModule


def __getattr__(name: str) -> Any:
    """`GatedDeltaNetModule` on first access (pickle looks the class up by name)."""
    if name == "GatedDeltaNetModule":
        return gated_deltanet_module_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class GatedDeltaNetCache(LayerCache):
    """Decoding state of one Gated DeltaNet layer: the conv window and the d_k x d_v state of every head,
    held by a transformers cache of one linear-attention layer (the module reads and writes it itself)."""

    def __init__(self, batch_size: int, shape: tuple[int, ...], device: torch.device | str | None = None) -> None:
        from transformers.cache_utils import Cache, LinearAttentionLayer

        super().__init__(batch_size, device)
        self.shape = shape  # (num_heads, head_dim, head_v_dim, conv_kernel) of the mixer that made it
        self.states = Cache(layers=[LinearAttentionLayer()])

    def index_select(self, batch_idx: torch.Tensor) -> GatedDeltaNetCache:
        new = super().index_select(batch_idx)  # mask and positions; batch_idx checked there
        new.states = copy.deepcopy(self.states)
        new.states.layers[0].reorder_cache(batch_idx.long())
        return new


def check_contiguous_rows(mask: torch.Tensor) -> None:
    """Debug mode only (it reads the mask back): each row of a bool mask [B, S] must be padding, real tokens,
    padding. A padded position after a real token and before another would decay that row's state (the
    module zeroes padded inputs, nothing more), so the tokens after such a gap would be wrong."""
    if not debug_checks_enabled():
        return
    started = mask.long().cummax(dim=1).values.bool()
    after_gap = (started & ~mask).long().cummax(dim=1).values.bool()
    check_equal("attention_mask", after_gap & mask, torch.zeros_like(mask),
                "must keep the real tokens of each row contiguous for the gated_deltanet mixer (left and/or right "
                "padding only, and no new tokens after right padding)")


class GatedDeltaNetMixer(nn.Module):
    """s = transformers' Qwen3NextGatedDeltaNet(a_bar): [B, T, D] -> [B, T, D], the transformers module doing
    the work (projections, short conv, gated delta rule, gated RMSNorm, output projection)."""

    # what the mixer table needs (sessa.layers.mixers); parameter matching tunes the value head width after
    # the model width, because one width step moves the parameter count by several per cent
    summary: ClassVar[str] = "Gated DeltaNet (transformers' Qwen3-Next module) in Sessa's gated block"
    accepts: ClassVar[frozenset[str]] = frozenset({"attention_mask", "cache"})
    options: ClassVar[dict[str, Any]] = GATED_DELTANET_DEFAULTS
    match_option: ClassVar[str | None] = "head_v_dim"

    def __init__(self, d_model: int, options: dict[str, Any] | None = None, ln_eps: float = 1e-5) -> None:
        super().__init__()
        from transformers.models.qwen3_next.configuration_qwen3_next import Qwen3NextConfig

        quiet_fallback_notes(*_TORCH_PATH)
        opts = gated_deltanet_options(d_model, options)
        self.d_model, self.settings = d_model, opts
        hf_config = Qwen3NextConfig(
            hidden_size=d_model, linear_num_key_heads=opts["num_heads"], linear_num_value_heads=opts["num_heads"],
            linear_key_head_dim=opts["head_dim"], linear_value_head_dim=opts["head_v_dim"],
            linear_conv_kernel_dim=opts["conv_kernel"], hidden_act="silu", rms_norm_eps=ln_eps,
            num_hidden_layers=1, layer_types=["linear_attention"], vocab_size=1,
            num_attention_heads=1, num_key_value_heads=1, head_dim=2,  # unused full-attention fields
            pad_token_id=None, bos_token_id=None, eos_token_id=None,
        )
        self.gdn = gated_deltanet_module_class()(hf_config, layer_idx=0)
        self.chunk_size = opts["chunk_size"]

    @classmethod
    def from_config(cls, config: Any) -> GatedDeltaNetMixer:
        """SessaConfig(mixer="gated_deltanet", mixer_options={...}): d_model, ln_eps and the options."""
        return cls(config.d_model, config.mixer_options, config.ln_eps)

    @classmethod
    def check_options(cls, d_model: int, options: dict[str, Any]) -> dict[str, int]:
        return gated_deltanet_options(d_model, options)

    def init_cache(self, batch_size: int, device: torch.device | str | None = None) -> GatedDeltaNetCache:
        """An empty per-layer cache for this mixer."""
        return GatedDeltaNetCache(batch_size, self._shape(), device)

    def _shape(self) -> tuple[int, ...]:
        o = self.settings
        return (o["num_heads"], o["head_dim"], o["head_v_dim"], o["conv_kernel"])

    def _layer_cache(self, cache: object, a: torch.Tensor) -> GatedDeltaNetCache:
        if cache is None:
            return self.init_cache(a.shape[0], a.device)
        if not isinstance(cache, GatedDeltaNetCache):
            raise TypeError(f"cache must be a GatedDeltaNetCache (one layer), got {type(cache).__name__}")
        if cache.batch_size != a.shape[0]:
            raise ValueError(f"cache holds batch size {cache.batch_size}, but the input has B = {a.shape[0]}")
        if cache.shape != self._shape():
            raise ValueError(f"cache was built for (num_heads, head_dim, head_v_dim, conv_kernel) = {cache.shape}, "
                             f"this mixer has {self._shape()}")
        return cache

    def forward(
        self,
        a: torch.Tensor,
        *,
        cache: GatedDeltaNetCache | None = None,
        use_cache: bool = False,
        attention_mask: torch.Tensor | None = None,
    ):
        """a_bar [B, T, D] -> s [B, T, D]; with a cache or use_cache -> (s, cache), updated in place.

        attention_mask [B, past + T] (1 = real token): padded inputs are zeroed, which leaves left- or
        right-padded rows exact; padding between real tokens of a row would decay its state, so the tokens
        after it come out wrong (debug mode, sessa.utils.checks.debug_checks, refuses such a mask).
        """
        check_hidden("a", a, self.d_model, self.gdn.in_proj_qkvz.weight.dtype)
        check_bool("use_cache", use_cache)
        if a.is_cuda:
            note_cuda_fallback("gated_deltanet", "fla", "flash-linear-attention causal-conv1d")
        B, T, _ = a.shape
        if cache is None and not use_cache:
            mask = full_mask(attention_mask, B, 0, T, None, a.device)
            if mask is not None:
                check_contiguous_rows(mask)
            return self._run(a, mask, None)
        if T == 0:
            raise ValueError("a must hold at least one new token (T >= 1) when a cache is used")
        layer = self._layer_cache(cache, a)
        n_past = layer.seq_len
        mask = full_mask(attention_mask, B, n_past, T, layer.attention_mask, a.device)
        if mask is not None:
            check_contiguous_rows(mask)
        new_mask = None if mask is None else mask[:, n_past:]
        s = self._run(a, new_mask, layer.states)
        layer.append_mask(new_mask, T)
        return s, layer

    def _run(self, a: torch.Tensor, mask: torch.Tensor | None, states: Any) -> torch.Tensor:
        """The transformers module on a [B, T, D] with mask [B, T] (None: all real) and its cache (or None)."""
        m = None if mask is None else mask.to(a.dtype)
        # chunk_size reaches the chunked rule through the module's keyword arguments (the other rules ignore it)
        return self.gdn(a, cache=states, attention_mask=m, chunk_size=self.chunk_size)



__all__ = ["GatedDeltaNetMixer", "GatedDeltaNetCache", "GATED_DELTANET_DEFAULTS", "gated_deltanet_options",
           "check_contiguous_rows"]
