"""SessaLM: a decoder-only language model made of gated Sessa blocks (nanoGPT-sized on purpose).

    SessaLM
      .model    SessaDecoder: embed_tokens -> layers (n_layers x GatedBlock(mixer)) -> norm
      .lm_head  Linear(d_model -> vocab_size), tied to embed_tokens by default

The Hugging Face `SessaForCausalLM` (sessa.models.hf) holds the same modules under the same names, so both
state dicts have the same keys (`model.embed_tokens.weight`, `model.layers.0.mixer.q_proj.weight`, ...,
`lm_head.weight`) and both run `decoder_forward` below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sessa.layers.mixers import block_class, build_mixer, mixer_class
from sessa.models.cache import SessaCache
from sessa.models.config import SessaConfig, SessaFields
from sessa.models.size import check_model_fits
from sessa.utils import IGNORE_INDEX
from sessa.utils.checks import check_bool, check_token_ids


@dataclass
class LMOutput:
    logits: torch.Tensor  # [B, T, vocab]
    loss: torch.Tensor | None = None  # mean next-token cross-entropy over labelled positions (lm_loss)
    cache: Any = None


def check_labels(labels: object, input_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Labels aligned with input_ids: same [B, T] shape, ids in [0, vocab_size) or IGNORE_INDEX."""
    labels = check_token_ids("labels", labels, vocab_size, ignore_index=IGNORE_INDEX)
    if labels.shape != input_ids.shape:
        raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
    return labels


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy in float32: position t predicts labels[t + 1]; IGNORE_INDEX is not scored.

    reduction="mean": the mean over scored tokens, and 0 (with zero gradient) when no token is scored;
    reduction="sum": the sum over scored tokens (the trainer divides by the count over the global batch).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    target = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), target,
                            ignore_index=IGNORE_INDEX, reduction="sum")
    if reduction == "sum":
        return total
    return total / (target != IGNORE_INDEX).sum().clamp(min=1)


def decoder_modules(config: SessaFields) -> tuple[nn.Embedding, nn.ModuleList, nn.Module]:
    """embed_tokens, layers (n_layers blocks around the configured mixer) and the final norm.

    The block is the mixer's (sessa.layers.mixers.block_class): the paper's GatedBlock unless the mixer
    names another (the "llama" baseline).
    """
    check_model_fits(config)  # refuse before allocating anything
    embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
    block = block_class(config.mixer)
    # the mixer is built between the block's W_in and W_out (a factory): the authors' creation order, so a
    # seed gives their initial weights
    layers = nn.ModuleList(
        block.from_config(config, functools.partial(build_mixer, config)) for _ in range(config.n_layers)
    )
    return embed_tokens, layers, block.final_norm(config)


def decoder_forward(
    decoder: nn.Module,
    input_ids: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    cache: SessaCache | None = None,
    use_cache: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    checkpoint: Callable[..., torch.Tensor] | None = None,
    checkpoint_every: int = 1,
) -> tuple[torch.Tensor, SessaCache | None]:
    """norm(layers(embed_tokens(input_ids))) [B, T, D] and the cache, for any module holding those three.

    checkpoint (e.g. `torch.utils.checkpoint.checkpoint`) runs every `checkpoint_every`-th block as
    `checkpoint(partial(block, **kwargs), h)`: activation checkpointing per block. Forwards with a cache never
    checkpoint (the block updates the cache, which a recompute would update twice).
    """
    input_ids = check_token_ids("input_ids", input_ids, decoder.embed_tokens.num_embeddings)
    check_bool("use_cache", use_cache)
    layers = decoder.layers
    if cache is not None:
        if not isinstance(cache, SessaCache):
            raise TypeError(f"cache must be a sessa.models.cache.SessaCache, got {type(cache).__name__}")
        if len(cache.layers) != len(layers):
            raise ValueError(f"cache has {len(cache.layers)} layers, the model has {len(layers)}")
        if cache.batch_size is not None and cache.batch_size != input_ids.shape[0]:
            raise ValueError(f"cache holds batch size {cache.batch_size}, input_ids has B = {input_ids.shape[0]}")
    elif use_cache:
        cache = SessaCache(len(layers))
    kwargs: dict[str, Any] = {}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    if cu_seqlens is not None:
        kwargs["cu_seqlens"] = cu_seqlens
    if cache is not None:
        kwargs["cache"] = cache
    mixer = type(layers[0].mixer)
    missing = sorted(set(kwargs) - mixer.accepts)
    if missing:
        raise ValueError(f"the {mixer.__name__} mixer does not support the arguments {missing}")
    h = decoder.embed_tokens(input_ids)
    for i, layer in enumerate(layers):
        if cache is None:
            if checkpoint is not None and i % checkpoint_every == 0:
                h = checkpoint(functools.partial(layer, **kwargs), h)  # h positional: reentrant mode too
            else:
                h = layer(h, **kwargs)
        else:  # the mixer creates its own per-layer cache on the first call and updates it afterwards
            h, cache.layers[i] = layer(h, **{**kwargs, "cache": cache.layers[i], "use_cache": True})
    return decoder.norm(h), cache


class SessaDecoder(nn.Module):
    """embed_tokens -> n_layers x block(mixer) -> final norm: the final hidden states [B, T, D]."""

    def __init__(self, config: SessaFields) -> None:
        super().__init__()
        self.embed_tokens, self.layers, self.norm = decoder_modules(config)

    def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, SessaCache | None]:
        """(hidden [B, T, D], cache); keyword arguments as in SessaLM.forward."""
        return decoder_forward(self, input_ids, **kwargs)


class SessaLM(nn.Module):
    """SessaDecoder (`.model`) + LM head (`.lm_head`, tied to the token embedding by default)."""

    def __init__(self, config: SessaConfig) -> None:
        super().__init__()
        if not isinstance(config, SessaConfig):
            raise TypeError(f"config must be a SessaConfig, got {type(config).__name__}")
        self.config = config
        self.model = SessaDecoder(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # Linear layers keep torch's default init (as the authors'); the embedding gets N(0, init_std)
        # because N(0, 1) rows through a tied head give logits of size sqrt(D) at step 0.
        nn.init.normal_(self.model.embed_tokens.weight, std=config.init_std)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        params = {id(p): p for p in self.parameters()}
        if exclude_embeddings:
            params.pop(id(self.model.embed_tokens.weight), None)
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
        """input_ids [B, T] -> logits [B, T, V]; with labels [B, T], loss = lm_loss(logits, labels).

        cache (a SessaCache, updated in place and returned) continues earlier tokens; use_cache=True starts
        one. attention_mask [B, past + T] (1 = real token) for padded batches; cu_seqlens [N + 1] for N
        sequences packed into B = 1. Labels are used as given (set padded positions to IGNORE_INDEX).
        Integer ids of any width (int8, uint8, int16, int32) are cast to int64; whether they lie in
        [0, vocab_size) is checked only in debug mode (`sessa.utils.checks.debug_checks`), which keeps
        this call free of host-device synchronisation.
        """
        h, cache = self.model(input_ids, attention_mask=attention_mask, cache=cache, use_cache=use_cache,
                              cu_seqlens=cu_seqlens)
        logits = self.lm_head(h)
        loss = None
        if labels is not None:
            loss = lm_loss(logits, check_labels(labels, input_ids, self.config.vocab_size))
        return LMOutput(logits=logits, loss=loss, cache=cache)


def supports_cache(config: SessaFields) -> bool:
    """Whether the configured mixer continues a cache (decoding token by token); baselines may not."""
    return "cache" in mixer_class(config.mixer).accepts


__all__ = ["SessaLM", "SessaDecoder", "LMOutput", "IGNORE_INDEX", "lm_loss", "check_token_ids", "check_labels",
           "decoder_modules", "decoder_forward", "supports_cache"]
