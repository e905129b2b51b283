"""Mixer registry: the LM builds `GatedBlock(d_model, MIXERS[config.mixer](config))` for each layer.

Baselines (attention, Mamba2, ...) register themselves here, so adding a new mixer is one function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

MixerFactory = Callable[[Any], nn.Module]
MIXERS: dict[str, MixerFactory] = {}


def register_mixer(name: str) -> Callable[[MixerFactory], MixerFactory]:
    def wrap(factory: MixerFactory) -> MixerFactory:
        MIXERS[name] = factory
        return factory

    return wrap


@register_mixer("sessa")
def _sessa(config: Any) -> nn.Module:
    from sessa.layers.sessa import SessaMixer

    return SessaMixer(
        config.d_model, config.n_heads, config.n_kv_heads, config.gamma_max, config.rope,
        rope_theta=config.rope_theta, feedback=config.feedback, impl=config.impl, chunk_size=config.chunk_size,
    )


def build_mixer(config: Any) -> nn.Module:
    _load_builtin_baselines()
    if config.mixer not in MIXERS:
        raise ValueError(f"mixer must be one of {sorted(MIXERS)}, got {config.mixer!r}")
    return MIXERS[config.mixer](config)


def _load_builtin_baselines() -> None:
    """Import the baseline modules so they register (they are optional: absent modules are skipped)."""
    import importlib

    for mod in ("sessa.layers.attention", "sessa.layers.mamba2"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a missing dependency inside an existing module is a real error
                raise
