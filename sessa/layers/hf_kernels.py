"""The transformers baselines (Mamba2, Gated DeltaNet) run transformers' pure-PyTorch paths; this keeps their
"install <package> for the optimized kernel" notes out of CPU runs, where the torch path is the intended one.

transformers logs one such note per function on its first call (logger `transformers.integrations.hub_kernels`).
`quiet_fallback_notes` drops the notes of the named functions; on CUDA, where the fused kernels would help,
`note_cuda_fallback` says it once per mixer in our words. Importing this file does not import transformers.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings

_LOGGER = "transformers.integrations.hub_kernels"
_QUIET: set[str] = set()  # function names whose fallback note is dropped
_NOTED: set[str] = set()  # mixers that already gave their CUDA note


def _keep(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    if "falling back to its reference PyTorch implementation" not in message:
        return True
    return not any(f"`{name}`" in message for name in _QUIET)


def quiet_fallback_notes(*functions: str) -> None:
    """Drop transformers' fallback note of these functions (e.g. "chunk_gated_delta_rule"); other logs pass."""
    logger = logging.getLogger(_LOGGER)
    if _keep not in logger.filters:
        logger.addFilter(_keep)
    _QUIET.update(functions)


def note_cuda_fallback(mixer: str, module: str, packages: str) -> None:
    """Once per mixer: on CUDA without the fused-kernel package `module`, say how to get it."""
    if mixer in _NOTED:
        return
    _NOTED.add(mixer)
    if importlib.util.find_spec(module) is None:
        warnings.warn(f"the {mixer} mixer runs transformers' pure-PyTorch path on CUDA; `pip install {packages}` "
                      "for its fused kernels", stacklevel=3)


__all__ = ["quiet_fallback_notes", "note_cuda_fallback"]
