"""SessaLM: a decoder-only language model made of gated Sessa blocks (nanoGPT-sized on purpose)."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sessa.layers.block import GatedBlock
from sessa.layers.cache import SessaCache
from sessa.layers.registry import build_mixer
from sessa.models.config import SessaConfig
from sessa.utils.checks import check_bool, check_token_ids

IGNORE_INDEX = -100


@dataclass
class LMOutput:
    logits: torch.Tensor  # [B, T, vocab]
    loss: torch.Tensor | None = None  # mean next-token cross-entropy over labelled positions
    cache: Any = None


class SessaLM(nn.Module):
    """token embedding -> n_layers x GatedBlock(mixer) -> LayerNorm -> LM head (tied by default)."""

    def __init__(self, config: SessaConfig) -> None:
        super().__init__()
        if not isinstance(config, SessaConfig):
            raise TypeError(f"config must be a SessaConfig, got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(
            GatedBlock(config.d_model, build_mixer(config), config.ln_eps) for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.d_model, eps=config.ln_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # Linear layers keep torch's default init (as the authors'); the embedding gets N(0, init_std)
        # because N(0, 1) rows through a tied head give logits of size sqrt(D) at step 0.
        nn.init.normal_(self.embed.weight, std=config.init_std)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        params = {id(p): p for p in self.parameters()}
        if exclude_embeddings:
            params.pop(id(self.embed.weight), None)
            params.pop(id(self.lm_head.weight), None)
        return sum(p.numel() for p in params.values())

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        cache: SessaCache | None = None,
        use_cache: bool = False,
        cu_seqlens: torch.Tensor | None = None,
    ) -> LMOutput:
        """input_ids [B, T] -> logits [B, T, V]; with labels [B, T], loss = CE(logits[:, :-1], labels[:, 1:]).

        cache (a SessaCache, updated in place and returned) continues earlier tokens; use_cache=True starts
        one. attention_mask [B, past + T] (1 = real token) for padded batches; cu_seqlens [N + 1] for N
        sequences packed into B = 1. Labels are used as given (set padded positions to IGNORE_INDEX).
        Integer ids of any width (int8, uint8, int16, int32) are cast to int64; whether they lie in
        [0, vocab_size) is checked only in debug mode (`sessa.utils.checks.debug_checks`), which keeps
        this call free of host-device synchronisation.
        """
        input_ids = check_token_ids("input_ids", input_ids, self.config.vocab_size)
        check_bool("use_cache", use_cache)
        if cache is not None:
            if not isinstance(cache, SessaCache):
                raise TypeError(f"cache must be a sessa.layers.cache.SessaCache, got {type(cache).__name__}")
            if len(cache.layers) != len(self.layers):
                raise ValueError(f"cache has {len(cache.layers)} layers, the model has {len(self.layers)}")
            if cache.batch_size is not None and cache.batch_size != input_ids.shape[0]:
                raise ValueError(
                    f"cache holds batch size {cache.batch_size}, input_ids has B = {input_ids.shape[0]}"
                )
        elif use_cache:
            cache = SessaCache(len(self.layers))
        kwargs: dict[str, Any] = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if cu_seqlens is not None:
            kwargs["cu_seqlens"] = cu_seqlens
        h = self.embed(input_ids)
        for i, layer in enumerate(self.layers):
            if cache is None:
                h = layer(h, **_supported(layer.mixer, kwargs))
                continue
            layer_kwargs = {**kwargs, "cache": cache.layers[i], "use_cache": True}
            # the mixer creates its own per-layer cache type on the first call and updates it afterwards
            h, cache.layers[i] = layer(h, **_supported(layer.mixer, layer_kwargs))
        logits = self.lm_head(self.norm(h))
        loss = None
        if labels is not None:
            labels = check_token_ids("labels", labels, self.config.vocab_size, ignore_index=IGNORE_INDEX)
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}")
            loss = lm_loss(logits, labels)
        return LMOutput(logits=logits, loss=loss, cache=cache)


def _supported(mixer: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """kwargs unchanged if the mixer's forward accepts them all; otherwise a ValueError naming the gap."""
    if not kwargs:
        return kwargs
    missing = [k for k in kwargs if k not in _forward_params(type(mixer))]
    if missing:
        raise ValueError(f"the {type(mixer).__name__} mixer does not support the arguments {missing}")
    return kwargs


@functools.cache
def _forward_params(mixer_type: type) -> frozenset[str]:
    """Keyword names a mixer class's forward accepts (looked up once per class)."""
    return frozenset(inspect.signature(mixer_type.forward).parameters)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: position t predicts labels[t + 1]; IGNORE_INDEX is skipped."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
    )
