"""Shared helpers for the ops: accumulation dtype, masks and argument validation."""

from __future__ import annotations

import torch


def accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """The solve can amplify by 1/(1 - gamma_max): accumulate in float32, or float64 when given float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def feedback_allowed(
    T: int, n_past: int, attention_mask: torch.Tensor | None, *, device: torch.device
) -> torch.Tensor:
    """Bool [B|1, T, n_past + T]: row t (absolute n_past + t) may read key j iff j < n_past + t and both real."""
    rows = torch.arange(T, device=device)[:, None] + n_past
    cols = torch.arange(n_past + T, device=device)[None, :]
    allowed = (cols < rows)[None]
    if attention_mask is not None:
        m = attention_mask.to(device=device, dtype=torch.bool)
        allowed = allowed & m[:, None, :] & m[:, n_past:, None]
    return allowed


def check_tensor(
    name: str,
    x: object,
    *,
    ndim: int | None = None,
    floating: bool | None = None,
    integer: bool = False,
) -> torch.Tensor:
    """Raise TypeError/ValueError naming `name` unless x is a tensor of the given rank and kind."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    return x


def check_positive_int(name: str, value: object, *, allow_none: bool = False) -> int | None:
    """Raise unless value is an int >= 1 (bool is rejected)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_cu_seqlens(cu_seqlens: object, total: int) -> torch.Tensor:
    """cu_seqlens: 1-D int tensor [0, l_1, l_1 + l_2, ..., total], non-decreasing."""
    cu = check_tensor("cu_seqlens", cu_seqlens, ndim=1, integer=True)
    if cu.numel() < 2:
        raise ValueError("cu_seqlens must hold at least two offsets [0, ..., total]")
    if int(cu[0]) != 0 or int(cu[-1]) != total:
        raise ValueError(f"cu_seqlens must start at 0 and end at the packed length {total}, got {cu.tolist()}")
    if bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(f"cu_seqlens must be non-decreasing, got {cu.tolist()}")
    return cu


_FINITE_CHECKS = True


def set_finite_checks(enabled: bool) -> None:
    """Turn the NaN/Inf input checks of feedback_solve and the blocks on or off (on by default).

    They cost one reduction per call (and a host sync on GPU); switch them off for maximum throughput once a
    pipeline is known to be clean. The trainer separately refuses to checkpoint a non-finite loss.
    """
    global _FINITE_CHECKS
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    _FINITE_CHECKS = enabled


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ValueError if x holds NaN or Inf (skipped when disabled or while torch.compile traces)."""
    if not _FINITE_CHECKS or torch.compiler.is_compiling() or x.numel() == 0:
        return
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} contains {n_bad} NaN/Inf value(s); fix the input (or call "
            "sessa.ops.utils.set_finite_checks(False) to skip this check)"
        )
