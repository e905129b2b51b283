"""The mixer table: `SessaConfig(mixer=name)` puts `MIXERS[name].from_config(config)` in every gated block.

A mixer maps the block's a_bar [B, T, D] to s [B, T, D]. Its class declares what the rest of the package
needs, as class attributes:

    summary       one line naming the model for reports (e.g. the legend of `sessa bench`)
    accepts       which of "attention_mask", "cu_seqlens", "cache" its forward takes as keyword arguments
                  ("cache": forward(a, cache=..., use_cache=...) returns (s, layer_cache) for decoding)
    options       the SessaConfig.mixer_options it understands, with their defaults ({} for none)
    match_option  None, or an int option that parameter matching tunes as a fine step after the width
    from_config   classmethod: the mixer for a SessaConfig
    check_options optional classmethod (d_model, options) raising ValueError for values that do not fit; it
                  may return the options with defaults that depend on d_model filled in (None -> a number)
    block         optional: the block class built around the mixer (default GatedBlock, the paper's block);
                  it has from_config(config, mixer_factory), final_norm(config) and keeps the mixer as
                  `.mixer` (e.g. the "llama" baseline's attention / SwiGLU block)

Adding a baseline is its own file (the class) plus one entry in MIXERS: the language model, the Hugging Face
classes, `sessa bench`, parameter matching and the tests all read from here (docs/bench.md, "Adding a
baseline").
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sessa.layers.attention import AttentionMixer
from sessa.layers.block import GatedBlock
from sessa.layers.gated_deltanet import GatedDeltaNetMixer
from sessa.layers.llama import LlamaAttentionMixer
from sessa.layers.mamba2 import Mamba2Mixer
from sessa.layers.sessa import SessaMixer
from sessa.utils import did_you_mean

MIXERS: dict[str, type[nn.Module]] = {
    "sessa": SessaMixer,
    "attention": AttentionMixer,
    "mamba2": Mamba2Mixer,
    "gated_deltanet": GatedDeltaNetMixer,
    "llama": LlamaAttentionMixer,
}


def mixer_class(name: object) -> type[nn.Module]:
    """MIXERS[name], or a ValueError naming the known mixers."""
    if not isinstance(name, str):
        raise TypeError(f"mixer must be a str, got {name!r}")
    if name not in MIXERS:
        raise ValueError(f"mixer must be one of {list(MIXERS)}, got {name!r}{did_you_mean(name, MIXERS)}")
    return MIXERS[name]


def check_option_names(mixer: str, options: dict[str, Any]) -> None:
    """Raise ValueError naming the first key of options that the mixer does not understand."""
    allowed: dict[str, Any] = mixer_class(mixer).options
    for key in options:
        if key not in allowed:
            raise ValueError(f"mixer_options[{key!r}] is not an option of mixer {mixer!r}"
                             f"{did_you_mean(key, allowed)}; allowed: {sorted(allowed) or 'none'}")


def mixer_options(config: Any) -> dict[str, Any]:
    """config.mixer_options over the mixer's defaults, checked (unknown keys, then the mixer's own checks);
    defaults that depend on d_model are filled in when the mixer's check_options returns them."""
    check_option_names(config.mixer, config.mixer_options)
    cls = mixer_class(config.mixer)
    options = {**cls.options, **config.mixer_options}
    check = getattr(cls, "check_options", None)
    if check is not None:
        resolved = check(config.d_model, options)
        if resolved is not None:
            options = {key: resolved[key] for key in options}
    return options


def block_class(name: object) -> type[nn.Module]:
    """The block built around mixer `name`: its class attribute `block`, or the paper's GatedBlock."""
    return getattr(mixer_class(name), "block", GatedBlock)


def build_mixer(config: Any) -> nn.Module:
    """The mixer of one block for a (validated) SessaConfig."""
    mixer_options(config)
    return mixer_class(config.mixer).from_config(config)


__all__ = ["MIXERS", "mixer_class", "block_class", "check_option_names", "mixer_options", "build_mixer"]
