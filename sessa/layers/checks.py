"""Validation of layer hyper-parameters: each error names the argument and its allowed range."""

from __future__ import annotations

import math

from sessa.ops.utils import check_positive_int


def check_heads(d_model: int, n_heads: int, n_kv_heads: int | None, rope: bool) -> tuple[int, int, int]:
    """Return (n_heads, n_kv_heads, head_dim) after checking divisibility and RoPE's even head width."""
    check_positive_int("d_model", d_model)
    check_positive_int("n_heads", n_heads)
    if n_kv_heads is None:
        n_kv_heads = n_heads
    check_positive_int("n_kv_heads", n_kv_heads)
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    if n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads ({n_kv_heads}) must divide n_heads ({n_heads})")
    head_dim = d_model // n_heads
    if not isinstance(rope, bool):
        raise TypeError(f"rope must be a bool, got {rope!r}")
    if rope and head_dim % 2:
        raise ValueError(f"rope=True needs an even head dim d_model / n_heads, got {head_dim}")
    return n_heads, n_kv_heads, head_dim


def check_gamma_max(gamma_max: float) -> float:
    """gamma_max must lie in the open interval (0, 1) so the solve stays bounded by 1 / (1 - gamma_max)."""
    if isinstance(gamma_max, bool) or not isinstance(gamma_max, (int, float)):
        raise TypeError(f"gamma_max must be a float in (0, 1), got {gamma_max!r}")
    if not (0.0 < gamma_max < 1.0) or not math.isfinite(gamma_max):
        raise ValueError(f"gamma_max must be in the open interval (0, 1), got {gamma_max}")
    return float(gamma_max)


def check_positive_float(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value}")
    return float(value)
