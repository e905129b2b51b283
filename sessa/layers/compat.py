"""The authors' layer API on our layer, and their checkpoint names in both directions.

`SessaLayer(D, n_heads, n_kv_heads, max_len, ln_eps, use_flash, use_forward_rope, gamma_max)` takes the
authors' arguments, has their attribute and state-dict names (`ln`, `W_in`, `mixer.proj_fb`,
`mixer.out_proj`, `mixer.gamma_ctx`, `W_out`, the `mixer.rope_inv_freq` buffer and, with `max_len`, the
two causal-mask buffers) and their `init_cache` / `prefill` / `decode_step`, while the computation is our
layer's (chunked feedback solve, SDPA, growing cache). From the same seed it holds the same weights.

For our own modules, `convert_reference_state_dict` renames their keys to ours and
`export_reference_state_dict` renames a trained module's keys back to theirs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from sessa.layers import sessa as core
from sessa.layers.block import GatedBlock
from sessa.layers.cache import SessaLayerCache
from sessa.layers.rope import rope_inv_freq
from sessa.utils.checks import check_int, check_tensor

LAYER_NAMES = {"norm": "ln", "in_proj": "W_in", "out_proj": "W_out"}  # our attribute -> theirs
MIXER_NAMES = {"fb_proj": "proj_fb", "o_proj": "out_proj", "gamma_proj": "gamma_ctx"}
OUR_KEYS = (
    "norm.weight", "norm.bias", "in_proj.weight", "in_proj.bias", "out_proj.weight", "out_proj.bias",
    *(f"mixer.{m}.{p}" for m in ("q_proj", "k_proj", "v_proj", "fb_proj") for p in ("weight", "bias")),
    "mixer.o_proj.weight", "mixer.gamma_bias", "mixer.gamma_proj.weight",
)
ROPE_BUFFER = "rope_inv_freq"
MASK_BUFFERS = ("causal_mask_f_full", "causal_mask_fb_full")  # strictly causal, causal with the diagonal
REFERENCE_ROPE_THETA = 10000.0  # their RoPE base, fixed in their code


def their_key(our_key: str) -> str:
    """One layer's key in our names ("mixer.fb_proj.weight") -> theirs ("mixer.proj_fb.weight")."""
    head, _, rest = our_key.partition(".")
    if head == "mixer":
        sub, _, rest = rest.partition(".")
        return f"mixer.{MIXER_NAMES.get(sub, sub)}.{rest}" if rest else f"mixer.{sub}"
    return f"{LAYER_NAMES.get(head, head)}.{rest}"


_FROM_THEIRS = {their_key(k): k for k in OUR_KEYS}
_THEIR_BUFFERS = tuple(f"mixer.{b}" for b in (ROPE_BUFFER, *MASK_BUFFERS))
_SUFFIX = re.compile(
    r"^(?P<prefix>(?:.*\.)?)(?P<suffix>" + "|".join(map(re.escape, [*_FROM_THEIRS, *_THEIR_BUFFERS])) + r")$"
)


def convert_reference_state_dict(sd: Mapping[str, torch.Tensor], *, strict: bool = True) -> dict[str, torch.Tensor]:
    """The authors' layer keys (under any prefix, e.g. "layers.3.") -> ours; their buffers are dropped.

    `our_layer.load_state_dict(convert_reference_state_dict(their_sd))` reproduces their layer. With
    strict=True a key that is neither a layer parameter nor one of their buffers raises ValueError; with
    strict=False such keys (an embedding, a final norm) pass through unchanged.
    """
    if not isinstance(sd, Mapping):
        raise TypeError(f"sd must be a mapping of parameter names to tensors, got {type(sd).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _SUFFIX.match(key) if isinstance(key, str) else None
        if m is None:
            if strict:
                raise ValueError(f"unknown key in the reference state_dict: {key!r} (strict=False keeps it)")
            out[key] = value
            continue
        prefix, suffix = m.group("prefix"), m.group("suffix")
        if suffix in _THEIR_BUFFERS:
            continue
        if suffix == "mixer.gamma_bias":
            value = value.reshape(())  # stored as a scalar or a 1-element vector
        out[prefix + _FROM_THEIRS[suffix]] = value
    return out


def reference_buffers(mixer: core.SessaMixer, max_len: int | None, device: torch.device) -> dict[str, torch.Tensor]:
    """The buffers the authors' mixer saves: RoPE frequencies (float32) and, given max_len, two bool masks."""
    out = {}
    if mixer.rope:
        out[ROPE_BUFFER] = rope_inv_freq(mixer.head_dim, REFERENCE_ROPE_THETA, device=device).float()
    if max_len is not None:
        ones = torch.ones(max_len, max_len, dtype=torch.bool, device=device)
        out.update(zip(MASK_BUFFERS, (ones.triu(1), ones.triu(0)), strict=True))
    return out


def export_reference_state_dict(module: nn.Module, *, max_len: int | None = None) -> dict[str, torch.Tensor]:
    """`module.state_dict()` with every Sessa layer's keys in the authors' names, plus their buffers.

    A Sessa layer is any GatedBlock whose mixer is a SessaMixer (a SessaLayer, or a layer of an LM); keys
    outside those layers (embedding, final norm) are kept. Pass the max_len their layers are built with,
    so the causal-mask buffers they expect are included. Layers of this module's own `SessaLayer` are
    already in their names (and carry their own max_len).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    max_len = check_int("max_len", max_len, lo=1, none_ok=True)
    layers = {}
    for name, m in module.named_modules():
        if isinstance(m, GatedBlock) and isinstance(m.mixer, core.SessaMixer) and not isinstance(m, SessaLayer):
            _check_exportable(name, m.mixer)
            layers[name + "." if name else ""] = m
    if not layers and not any(isinstance(m, SessaLayer) for m in module.modules()):
        raise ValueError(f"{type(module).__name__} holds no Sessa layer (a GatedBlock with a SessaMixer)")
    sd = module.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        prefix = next((p for p in layers if key.startswith(p) and key[len(p) :] in OUR_KEYS), None)
        out[key if prefix is None else prefix + their_key(key[len(prefix) :])] = value
    for prefix, layer in layers.items():
        device = layer.mixer.q_proj.weight.device
        for name, buf in reference_buffers(layer.mixer, max_len, device).items():
            out[f"{prefix}mixer.{name}"] = buf
    return out


def _check_exportable(name: str, mixer: core.SessaMixer) -> None:
    """The authors' layer always has the feedback branch and RoPE base 10000: refuse what it cannot hold."""
    where = f"layer {name!r}" if name else "the layer"
    if not mixer.feedback:
        raise ValueError(f"{where} has feedback=False; the authors' layer always has the feedback branch")
    if mixer.rope and mixer.rope_theta != REFERENCE_ROPE_THETA:
        raise ValueError(f"{where} has rope_theta={mixer.rope_theta}; the authors' RoPE base is 10000")


class _AuthorsNames:
    """Mixin for an nn.Module: submodules ours calls `a` are registered under the authors' name `_THEIRS[a]`.

    Our code keeps reading and writing its own names (a write is redirected, a read is a property);
    state_dict, named_parameters and attribute access show theirs, so their checkpoints and code that
    reaches into their modules work unchanged. Plain properties keep torch.compile's view of the module simple.
    """

    _THEIRS: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for ours, theirs in cls._THEIRS.items():
            setattr(cls, ours, property(lambda self, name=theirs: getattr(self, name)))

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(self._THEIRS.get(name, name), value)

    def __delattr__(self, name: str) -> None:
        super().__delattr__(self._THEIRS.get(name, name))


class ReferenceMixer(_AuthorsNames, core.SessaMixer):
    """Our SessaMixer with the authors' names and buffers (built by the compatible `SessaLayer`)."""

    _THEIRS = MIXER_NAMES

    def __init__(self, *args, max_len: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_len = max_len
        if self.o_proj is None:
            self.o_proj = nn.Identity()  # their one-head mixer holds an identity (no state) as out_proj
        if self.rope:  # saved in their checkpoints (its shape tells the head width); our RoPE computes its own
            self.register_buffer(ROPE_BUFFER, reference_buffers(self, None, torch.device("cpu"))[ROPE_BUFFER])

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.max_len is not None:  # their [max_len, max_len] masks, made on demand instead of kept
            masks = reference_buffers(self, self.max_len, self.q_proj.weight.device)
            for name in MASK_BUFFERS:
                destination[prefix + name] = masks[name]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in MASK_BUFFERS:  # accepted whatever their size: we build masks on the fly
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ReferenceCache(Mapping):
    """The authors' cache dict over our growing per-layer cache: "t", "k_f", "v_f" [B, t, Hkv, d] (keys after
    RoPE), "k_b", "s" [B, t, D]. Tensors hold the t tokens so far (their preallocated max_len slots beyond t
    are never read); max_len is the capacity that prefill and decode_step enforce."""

    _KEYS = ("t", "k_f", "v_f", "k_b", "s")

    def __init__(self, cache: SessaLayerCache, max_len: int) -> None:
        self.cache, self.max_len = cache, max_len

    def __getitem__(self, key: str):
        c = self.cache
        if key == "t":
            return c.seq_len
        views = {"k_f": lambda: c.k, "v_f": lambda: c.v, "k_b": lambda: c.k_b[:, :, 0], "s": lambda: c.s[:, :, 0]}
        if key not in views:
            raise KeyError(key)
        return views[key]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    def __repr__(self) -> str:
        return f"ReferenceCache(t={self.cache.seq_len}, max_len={self.max_len}, batch_size={self.cache.batch_size})"


class SessaLayer(_AuthorsNames, core.SessaLayer):
    """Drop-in for the authors' `SessaLayer`: their arguments, names, buffers and cache methods, our compute.

    max_len (optional) is the longest sequence the layer takes and the default cache capacity, as theirs.
    use_flash is accepted for compatibility: SDPA picks its fastest kernel by itself, without their
    float32 -> bfloat16 cast. Subclass of `sessa.layers.sessa.SessaLayer`, so it also takes our forward
    keywords (attention_mask, cu_seqlens, cache).
    """

    _THEIRS = LAYER_NAMES
    mixer_class = ReferenceMixer

    def __init__(
        self,
        D: int,
        n_heads: int = 1,
        n_kv_heads: int | None = None,
        max_len: int | None = None,
        ln_eps: float = 1e-5,
        use_flash: bool = False,
        use_forward_rope: bool = True,
        gamma_max: float = 0.999,
    ) -> None:
        check_int("D", D, lo=1)
        max_len = check_int("max_len", max_len, lo=1, none_ok=True)
        for name, flag in (("use_flash", use_flash), ("use_forward_rope", use_forward_rope)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        super().__init__(D, n_heads, n_kv_heads, gamma_max, use_forward_rope, ln_eps, max_len=max_len)
        self.max_len, self.use_flash = max_len, use_flash

    def forward(self, x: torch.Tensor, **kwargs):
        """x [B, T, D] -> y [B, T, D] (T <= max_len when max_len is set)."""
        if self.max_len is not None and isinstance(x, torch.Tensor) and x.dim() == 3 and x.shape[1] > self.max_len:
            raise ValueError(f"x has T = {x.shape[1]} tokens, more than max_len = {self.max_len}")
        return super().forward(x, **kwargs)

    def init_cache(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
        max_len: int | None = None,
    ) -> ReferenceCache:
        """An empty cache for up to max_len tokens (default: the layer's max_len), on the layer's device/dtype."""
        check_int("batch_size", batch_size, lo=1)
        max_len = check_int("max_len", max_len, lo=1, none_ok=True) or self.max_len
        if max_len is None:
            raise ValueError("max_len must be given to init_cache or to SessaLayer(...) to size the cache")
        weight = self.mixer.q_proj.weight
        dtype = weight.dtype if dtype is None else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        device = weight.device if device is None else device
        return ReferenceCache(self.mixer.init_cache(batch_size, dtype=dtype, device=device), max_len)

    def prefill(self, x: torch.Tensor, cache: ReferenceCache) -> tuple[torch.Tensor, ReferenceCache]:
        """Run x [B, T, D] and fill the cache: returns (y [B, T, D], cache). A non-empty cache is continued."""
        cache = _check_cache(cache)
        x = check_tensor("x", x, ndim=3, floating=True)
        if cache["t"] + x.shape[1] > cache.max_len:
            raise ValueError(f"prefill of {x.shape[1]} tokens after {cache['t']} exceeds max_len = {cache.max_len}")
        if x.shape[1] == 0:
            return super().forward(x), cache  # nothing to cache
        y, _ = super().forward(x, cache=cache.cache)
        return y, cache

    def decode_step(
        self, x_t: torch.Tensor, cache: ReferenceCache, use_flash_decode: bool = False
    ) -> tuple[torch.Tensor, ReferenceCache]:
        """One token x_t [B, D] or [B, 1, D] -> (y_t of the same shape, cache). use_flash_decode is ignored."""
        cache = _check_cache(cache)
        if not isinstance(use_flash_decode, bool):
            raise TypeError(f"use_flash_decode must be a bool, got {use_flash_decode!r}")
        x_t = check_tensor("x_t", x_t, floating=True)
        if not (x_t.dim() == 2 or (x_t.dim() == 3 and x_t.shape[1] == 1)):
            raise ValueError(f"x_t must be [B, D] or [B, 1, D], got shape {tuple(x_t.shape)}")
        if cache["t"] >= cache.max_len:
            raise ValueError(f"the cache is full: it holds max_len = {cache.max_len} tokens")
        y, _ = super().forward(x_t.reshape(x_t.shape[0], 1, x_t.shape[-1]), cache=cache.cache)
        return y.reshape(x_t.shape), cache


def _check_cache(cache: object) -> ReferenceCache:
    if not isinstance(cache, ReferenceCache):
        raise TypeError(f"cache must come from SessaLayer.init_cache, got {type(cache).__name__}")
    return cache


__all__ = [
    "SessaLayer", "ReferenceMixer", "ReferenceCache", "convert_reference_state_dict", "export_reference_state_dict",
]
