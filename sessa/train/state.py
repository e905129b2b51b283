"""Gather / restore the full training state of a (possibly DDP- or FSDP-wrapped) model for checkpoints.

Weights and optimizer moments are gathered to full, unsharded tensors on rank 0 (torch.distributed
.checkpoint.state_dict), so a checkpoint written by N ranks loads in one process and vice versa.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from sessa.train import distributed as D
from sessa.train.checkpoint import OPTIM_FILE, CheckpointError, check_weights, weights_for_save, write_checkpoint
from sessa.train.rng import get_rng_state
from sessa.utils.io import json_safe


def save_state(root: str, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, sched: Any, plan: Any,
               logger: Any, cfg: Any, info: D.DistInfo) -> str | None:
    """Collective: every rank calls it; rank 0 writes the checkpoint folder. Returns its path on rank 0."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=opts)
    optim = get_optimizer_state_dict(model, optimizer, options=opts)
    rngs = D.gather_objects(get_rng_state(), info)
    path = None
    if info.is_main:
        state = {"scheduler": sched.state_dict(), "data": plan.position(step), "rng": rngs,
                 "world_size": info.world_size, "saved_at": time.time(), "train_config": cfg.to_dict(),
                 "history": logger.history, "evals": logger.evals, "log_window": logger.window.state_dict()}
        config = {"model": cfg.model.to_dict(), "train": cfg.to_dict()}
        path = write_checkpoint(root, step, weights_for_save(weights, cfg.model.tie_embeddings), optim, config,
                                json_safe(state), cfg.keep_last)
    D.barrier(info)  # nobody races ahead (or exits) while rank 0 is writing
    return path


def restore_state(model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
                  optim: dict[str, Any], folder: str, info: D.DistInfo) -> None:
    """Load full weights and optimizer state into the (wrapped) model on every rank (each read the files)."""
    file = os.path.join(folder, "model.safetensors")
    full = check_weights(D.unwrap(model), weights, file)
    full = {k: v.to(info.device) for k, v in full.items()}
    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, full, options=opts)
    try:
        set_optimizer_state_dict(model, optimizer, optim, options=opts)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{os.path.join(folder, OPTIM_FILE)}: optimizer state does not fit the model: {e}") \
            from None
