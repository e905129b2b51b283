"""AdamW with decoupled weight decay on matrices only, and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def lr_factor(step: int, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """lr(step)/lr: linear warmup (step+1)/warmup, then cosine from 1 down to min_lr_ratio at `steps`.

    `step` counts completed optimizer steps (0-based for the update being made).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets every param group's lr from lr_factor; its whole state is JSON-able (saved in state.json)."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, steps: int, warmup_steps: int,
                 min_lr_ratio: float) -> None:
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.steps = steps
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio
        self.step_num = 0  # updates made so far

    def lr_at(self, step: int) -> float:
        return self.base_lr * lr_factor(step, self.steps, self.warmup_steps, self.min_lr_ratio)

    def apply(self) -> float:
        """Set the lr for the next update (number self.step_num) and return it."""
        lr = self.lr_at(self.step_num)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def step(self) -> None:
        self.step_num += 1

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "warmup_cosine", "step": self.step_num, "base_lr": self.base_lr, "steps": self.steps,
                "warmup_steps": self.warmup_steps, "min_lr_ratio": self.min_lr_ratio}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "warmup_cosine":
            raise ValueError(f"scheduler state must be of kind 'warmup_cosine', got {state.get('kind')!r}")
        self.step_num = int(state["step"])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (Linear/Embedding weights); no decay on biases, LayerNorm and scalar gains (b_gamma).

    Scalars get a group of their own (same hyper-parameters as the no-decay group): under FSDP they stay
    replicated plain tensors while the rest are sharded DTensors, and a group must not mix the two. The
    groups are the same in every mode so that checkpoints move freely between 1 process, DDP and FSDP.
    """
    decay, no_decay, scalars, seen = [], [], [], set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied embedding/head: one entry
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay if p.dim() == 1 else scalars).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0},
              {"params": scalars, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float) -> torch.optim.AdamW:
    """torch.optim.AdamW over param_groups (works on plain, DDP and FSDP2-sharded parameters)."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)
