"""How big a model is before it exists: parameters and bytes from its config, and a refusal when the
weights alone would not fit in the memory this machine has free.

One block is built on torch's "meta" device (no memory, any mixer) and counted; the rest is arithmetic, so
even an absurd config (n_layers = 10**6, vocab_size = 10**12) is refused at once with a message naming the
fields, instead of hanging or failing deep inside torch.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

from sessa.layers.mixers import block_class, build_mixer

MAX_BYTES_ENV = "SESSA_MAX_MODEL_BYTES"  # overrides the memory limit (bytes), e.g. for a GPU's memory


def model_size(config: Any) -> tuple[int, int]:
    """(parameters, bytes of float32 weights) of the language model a (validated) config describes."""
    block_cls = block_class(config.mixer)  # the paper's gated block, or the mixer's own (e.g. "llama")
    with torch.device("meta"):
        block = block_cls.from_config(config, functools.partial(build_mixer, config))
        norm = block_cls.final_norm(config)
    per_block = sum(p.numel() for p in block.parameters())
    embed = config.vocab_size * config.d_model
    head = 0 if config.tie_embeddings else embed
    params = embed + head + sum(p.numel() for p in norm.parameters()) + config.n_layers * per_block
    return params, 4 * params


def available_bytes() -> int | None:
    """$SESSA_MAX_MODEL_BYTES if set, else the memory the OS reports free (Linux: MemAvailable), else None."""
    env = os.environ.get(MAX_BYTES_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise ValueError(f"{MAX_BYTES_ENV} must be a number of bytes, got {env!r}") from None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_model_fits(config: Any) -> None:
    """Raise ValueError naming the sizing fields when the fp32 weights exceed the available memory.

    Skipped while building on the meta device (e.g. `sessa info`), where nothing is allocated.
    """
    if torch.get_default_device().type == "meta":
        return
    limit = available_bytes()
    if limit is None:
        return
    params, nbytes = model_size(config)
    if nbytes > limit:
        raise ValueError(
            f"the model would have {params:,} parameters ({nbytes / 2**30:,.1f} GiB of float32 weights), more than "
            f"the {limit / 2**30:,.1f} GiB of memory available (vocab_size={config.vocab_size}, "
            f"d_model={config.d_model}, n_layers={config.n_layers}, mixer={config.mixer!r}); make them smaller, "
            f"or set {MAX_BYTES_ENV} if the limit is wrong"
        )


__all__ = ["model_size", "available_bytes", "check_model_fits", "MAX_BYTES_ENV"]
