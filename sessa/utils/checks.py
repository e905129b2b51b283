"""Argument checks for every public entry point; each error names the argument and what it allows.

Two kinds of check:

* Structural checks (Python types, number ranges, tensor rank, shape and dtype) read metadata only, cost
  nothing and always run.
* Value checks on tensor contents (NaN/Inf, `attention_mask` entries other than 0/1, |gamma| >= 1, token
  ids outside the vocabulary, NaN in an `initial_state`) must copy a result from the device to the host:
  a stall on a GPU and a graph break under torch.compile. They run only in debug mode, and then report
  the first bad tensor by name::

      with sessa.utils.checks.debug_checks():   # or set_debug_checks(True), or SESSA_DEBUG_CHECKS=1
          loss = model(input_ids, labels=labels).loss

  While torch.compile traces, value checks are skipped even in debug mode (run the eager model to debug).

Inner functions trust what the public entry point validated and check nothing again. Importable with
torch alone.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch

ENV_VAR = "SESSA_DEBUG_CHECKS"
SPLITS = ("train", "validation", "test")
_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _env_debug() -> bool:
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    if raw not in _ON + _OFF:
        raise ValueError(f"environment variable {ENV_VAR} must be 1 or 0 (or true/false), got {raw!r}")
    return raw in _ON


_debug = _env_debug()


# --- debug mode -------------------------------------------------------------------------------------------


def debug_checks_enabled() -> bool:
    """True while value checks (NaN/Inf, mask values, gamma and token-id ranges) run."""
    return _debug


def set_debug_checks(enabled: bool) -> None:
    """Turn the value checks on or off for the whole process (default: off, or SESSA_DEBUG_CHECKS)."""
    global _debug
    _debug = check_bool("enabled", enabled)


@contextlib.contextmanager
def debug_checks(enabled: bool = True) -> Iterator[None]:
    """Run the value checks (enabled=True) or skip them inside the block; the previous setting comes back."""
    global _debug
    check_bool("enabled", enabled)
    previous, _debug = _debug, enabled
    try:
        yield
    finally:
        _debug = previous


def _value_checks_on(x: torch.Tensor) -> bool:
    return _debug and x.numel() > 0 and not torch.compiler.is_compiling()


def _raise_first_bad(name: str, x: torch.Tensor, bad: torch.Tensor, rule: str) -> None:
    """ValueError naming `name`, the rule, how many entries break it and the first one (one host read)."""
    if not bool(bad.any()):
        return
    index = tuple(int(i) for i in bad.nonzero()[0])
    n = int(bad.sum())
    raise ValueError(
        f"{name} {rule}; {n} entr{'y breaks' if n == 1 else 'ies break'} it, the first at index {index}: "
        f"{x[index].item()!r}"
    )


def check_finite(name: str, x: torch.Tensor) -> None:
    """Debug mode only: ValueError if the floating tensor x holds NaN or Inf."""
    if _value_checks_on(x):
        _raise_first_bad(name, x, ~torch.isfinite(x), "must be finite but holds NaN/Inf")


def check_in_range(
    name: str,
    x: torch.Tensor,
    lo: float,
    hi: float,
    *,
    open_interval: bool = False,
    also: int | None = None,
    rule: str | None = None,
) -> None:
    """Debug mode only: ValueError unless every entry lies in [lo, hi] ((lo, hi) when open_interval) or
    equals `also`. NaN never lies in a range. `rule` replaces the default wording of the error."""
    if not _value_checks_on(x):
        return
    ok = (x > lo) & (x < hi) if open_interval else (x >= lo) & (x <= hi)
    if also is not None:
        ok |= x == also
    if rule is None:
        rule = f"must lie {_interval(lo, hi, open_interval, open_interval)}"
        rule += "" if also is None else f" or equal {also}"
    _raise_first_bad(name, x, ~ok, rule)


def check_equal(name: str, x: torch.Tensor, expected: torch.Tensor, rule: str) -> None:
    """Debug mode only: ValueError unless x equals `expected` (same shape) entry by entry."""
    if _value_checks_on(x):
        _raise_first_bad(name, x, x != expected.to(x.device), rule)


# --- Python values ----------------------------------------------------------------------------------------


def _interval(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return ""


def check_int(
    name: str, value: object, *, lo: int | None = None, hi: int | None = None, none_ok: bool = False
) -> int | None:
    """A Python int in [lo, hi] (bool is refused); None passes when none_ok."""
    if value is None and none_ok:
        return None
    want = " ".join(filter(None, ("an int", _interval(lo, hi), "or None" if none_ok else "")))
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {want}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be {want}, got {value}")
    return value


def check_float(
    name: str,
    value: object,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    none_ok: bool = False,
) -> float | None:
    """A finite float in the interval (ints accepted, bool refused), returned as float; None passes when
    none_ok."""
    if value is None and none_ok:
        return None
    want = " ".join(filter(None, ("a finite number", _interval(lo, hi, lo_open, hi_open),
                                  "or None" if none_ok else "")))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {want}, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    bad |= lo is not None and (value <= lo if lo_open else value < lo)
    bad |= hi is not None and (value >= hi if hi_open else value > hi)
    if bad:
        raise ValueError(f"{name} must be {want}, got {value}")
    return value


def check_bool(name: str, value: object) -> bool:
    """True or False exactly (not 0/1, not 'yes')."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of `choices` (compared with ==, so 1 is not '1')."""
    if not any(type(value) is type(c) and value == c for c in choices):
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_split(split: object) -> str:
    """'train', 'validation' or 'test' ('val', 'valid' and 'dev' mean 'validation')."""
    if split in ("val", "valid", "dev"):
        return "validation"
    return check_choice("split", split, SPLITS)


# --- tensors ----------------------------------------------------------------------------------------------


def check_tensor(
    name: str, x: object, *, ndim: int | None = None, floating: bool = False, integer: bool = False
) -> torch.Tensor:
    """A torch.Tensor of rank ndim; floating / integer (bool and complex refused) dtype when asked."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    return x


def check_input_dtype(name: str, x: torch.Tensor, dtype: torch.dtype) -> None:
    """TypeError when x's dtype differs from the module's parameters' (skipped under torch.autocast, which
    casts per operation)."""
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"{name} has dtype {x.dtype} but the module's parameters are {dtype}: cast one to the other "
            f"(x.to({dtype}) or module.to({x.dtype})), or run under torch.autocast"
        )


def check_hidden(name: str, x: object, d_model: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """[B, T, d_model] floating tensor with B >= 1 (and dtype, see check_input_dtype); NaN/Inf in debug mode."""
    x = check_tensor(name, x, ndim=3, floating=True)
    if x.shape[-1] != d_model:
        raise ValueError(f"{name} must have width d_model = {d_model} in its last dimension, got {x.shape[-1]}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (B = 0); pass at least one sequence")
    if dtype is not None:
        check_input_dtype(name, x, dtype)
    check_finite(name, x)
    return x


def check_mask(name: str, mask: object, shape: tuple[int, ...], dims: str = "[B, past + T]") -> torch.Tensor:
    """A bool or integer 0/1 tensor of the given shape (named `dims` in the error), returned as bool; its
    values are checked in debug mode."""
    m = check_tensor(name, mask)
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"{name} must be {dims} = {list(shape)}, got shape {list(m.shape)}")
    if m.is_floating_point() or m.is_complex():
        raise TypeError(f"{name} must be a bool or integer tensor of 0/1, got dtype {m.dtype}")
    if m.dtype == torch.bool:
        return m
    check_in_range(name, m, 0, 1, rule="must hold only 0 (padding) and 1 (real token)")
    return m != 0


def check_token_ids(name: str, ids: object, vocab_size: int, *, ignore_index: int | None = None) -> torch.Tensor:
    """[B, T] integer ids with B >= 1, returned as int64 (smaller integer dtypes are cast). Debug mode also
    checks every id lies in [0, vocab_size) or equals ignore_index."""
    ids = check_tensor(name, ids, ndim=2, integer=True)
    if ids.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (B = 0)")
    check_in_range(
        name, ids, 0, vocab_size - 1, also=ignore_index,
        rule=f"must lie in [0, vocab_size = {vocab_size})" + ("" if ignore_index is None else f" or be {ignore_index}"),
    )
    return ids.long()


def check_cu_seqlens(cu_seqlens: object, total: int) -> list[int]:
    """Offsets [0, l_1, l_1 + l_2, ..., total] of packed sequences as a host list: a 1-D integer tensor,
    non-decreasing. One host read, which the packed path needs anyway to split the sequences."""
    cu = check_tensor("cu_seqlens", cu_seqlens, ndim=1, integer=True)
    if cu.numel() < 2:
        raise ValueError("cu_seqlens must hold at least two offsets [0, ..., total]")
    bounds = cu.tolist()
    if bounds[0] != 0 or bounds[-1] != total:
        raise ValueError(f"cu_seqlens must start at 0 and end at the packed length {total}, got {bounds}")
    if any(b < a for a, b in zip(bounds[:-1], bounds[1:], strict=True)):
        raise ValueError(f"cu_seqlens must be non-decreasing, got {bounds}")
    return bounds


# --- layer hyper-parameters -------------------------------------------------------------------------------


def check_heads(d_model: object, n_heads: object, n_kv_heads: object, rope: object) -> tuple[int, int, int]:
    """(n_heads, n_kv_heads, head_dim) after checking divisibility and RoPE's even head width."""
    d_model = check_int("d_model", d_model, lo=1)
    n_heads = check_int("n_heads", n_heads, lo=1)
    n_kv_heads = check_int("n_kv_heads", n_heads if n_kv_heads is None else n_kv_heads, lo=1)
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    if n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads ({n_kv_heads}) must divide n_heads ({n_heads})")
    head_dim = d_model // n_heads
    if check_bool("rope", rope) and head_dim % 2:
        raise ValueError(f"rope=True needs an even head dim d_model / n_heads, got {head_dim}")
    return n_heads, n_kv_heads, head_dim


def check_gamma_max(gamma_max: object) -> float:
    """gamma_max in the open interval (0, 1): the solve then stays bounded by 1 / (1 - gamma_max)."""
    return check_float("gamma_max", gamma_max, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


__all__ = [
    "ENV_VAR", "SPLITS", "debug_checks", "debug_checks_enabled", "set_debug_checks", "check_finite",
    "check_in_range", "check_equal", "check_int", "check_float", "check_bool", "check_choice", "check_split",
    "check_tensor", "check_input_dtype", "check_hidden", "check_mask", "check_token_ids", "check_cu_seqlens",
    "check_heads", "check_gamma_max",
]
