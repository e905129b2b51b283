"""SessaLM: a decoder-only language model made of gated Sessa blocks (nanoGPT-sized on purpose)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sessa.layers.block import GatedBlock
from sessa.layers.registry import build_mixer
from sessa.models.config import SessaConfig
from sessa.ops.utils import check_tensor

IGNORE_INDEX = -100


@dataclass
class LMOutput:
    logits: torch.Tensor  # [B, T, vocab]
    loss: torch.Tensor | None = None  # mean next-token cross-entropy over labelled positions
    cache: Any = None


def check_token_ids(name: str, ids: object, vocab_size: int, *, allow_ignore: bool = False) -> torch.Tensor:
    """[B, T] integer ids in [0, vocab_size) (and IGNORE_INDEX for labels)."""
    ids = check_tensor(name, ids, ndim=2, integer=True)
    if ids.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (B = 0)")
    if ids.numel():
        bad = (ids < 0) | (ids >= vocab_size)
        if allow_ignore:
            bad &= ids != IGNORE_INDEX
        if bool(bad.any()):
            v = ids[bad][0].item()
            extra = f" or {IGNORE_INDEX}" if allow_ignore else ""
            raise ValueError(f"{name} must lie in [0, vocab_size = {vocab_size}){extra}, found {v}")
    return ids


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

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> LMOutput:
        """input_ids [B, T] -> logits [B, T, V]; with labels [B, T], loss = CE(logits[:, :-1], labels[:, 1:])."""
        check_token_ids("input_ids", input_ids, self.config.vocab_size)
        h = self.embed(input_ids)
        for layer in self.layers:
            h = layer(h)
        logits = self.lm_head(self.norm(h))
        loss = None
        if labels is not None:
            check_token_ids("labels", labels, self.config.vocab_size, allow_ignore=True)
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}")
            loss = lm_loss(logits, labels)
        return LMOutput(logits=logits, loss=loss)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: position t predicts labels[t + 1]; IGNORE_INDEX is skipped."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
    )
