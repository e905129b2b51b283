"""Parameter matching: pick a baseline's width (and Mamba2 head width) so its model has as many parameters
as the Sessa model it is compared with, as the paper does ("parameter counts are matched").

Only the width d_model (and, for Mamba2, the SSM state size N as a fine step; its widths keep
expand * d_model a multiple of the SSM head width) changes; depth, vocabulary, block structure, heads and
the training budget stay identical.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sessa.models.config import SessaConfig
from sessa.utils.checks import check_float

DEFAULT_TOLERANCE = 0.03  # |params_baseline / params_sessa - 1| allowed


def count_parameters(config: SessaConfig) -> int:
    """Total distinct parameters of SessaLM(config), built on the meta device (no memory, no init cost)."""
    from sessa.models.lm import SessaLM

    with torch.device("meta"):
        model = SessaLM(config)
    return model.num_parameters()


def _candidate(config: SessaConfig, mixer: str, width: int) -> SessaConfig | None:
    """The baseline config at this width, or None when the width is not valid for the mixer."""
    n_heads = config.n_heads
    if width % n_heads or (config.rope and (width // n_heads) % 2):
        return None
    if config.n_kv_heads is not None and n_heads % config.n_kv_heads:
        return None
    base = dataclasses.replace(config, d_model=width, mixer=mixer, mixer_options={})
    if mixer == "attention":
        return base
    if mixer == "mamba2":
        from sessa.layers.mamba2 import MAMBA2_DEFAULTS

        opts = {k: v for k, v in config.mixer_options.items() if k in MAMBA2_DEFAULTS}
        full = {**MAMBA2_DEFAULTS, **opts}
        inner = full["expand"] * width
        # keep the SSM head width fixed: only widths it divides are candidates
        if inner % full["head_dim"] or (inner // full["head_dim"]) % full["n_groups"]:
            return None
        return dataclasses.replace(base, mixer_options=opts)
    raise ValueError(f"mixer must be 'attention' or 'mamba2' for parameter matching, got {mixer!r}")


def match_baseline(
    config: SessaConfig, mixer: str, *, tolerance: float = DEFAULT_TOLERANCE, mixer_options: dict | None = None
) -> tuple[SessaConfig, dict[str, Any]]:
    """Return (baseline config, report) whose parameter count is closest to SessaLM(config)'s.

    The report holds target and matched counts, the relative difference and the chosen width. Raises
    ValueError when no width within `tolerance` exists (e.g. very tiny models where one width step is
    already more than the tolerance).
    """
    if not isinstance(config, SessaConfig):
        raise TypeError(f"config must be a SessaConfig, got {type(config).__name__}")
    check_float("tolerance", tolerance, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if mixer not in ("attention", "mamba2"):
        raise ValueError(f"mixer must be 'attention' or 'mamba2' for parameter matching, got {mixer!r}")
    if mixer_options:
        config = dataclasses.replace(config, mixer_options=dict(mixer_options))
    target = count_parameters(dataclasses.replace(config, mixer_options={}) if config.mixer == "sessa" else config)
    step = 2 * config.n_heads if config.rope else config.n_heads
    widths = list(range(step, 4 * config.d_model + step, step))
    cache: dict[int, int | None] = {}

    def params(i: int) -> int | None:
        if i not in cache:
            cand = _candidate(config, mixer, widths[i])
            cache[i] = None if cand is None else count_parameters(cand)
        return cache[i]

    # parameter count grows with width: binary search on the valid widths, then look at the neighbours
    lo, hi = 0, len(widths) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        j = mid
        while j < hi and params(j) is None:
            j += 1
        p = params(j)
        if p is None or p >= target:
            hi = mid
        else:
            lo = j + 1
    best_i, best_err = None, float("inf")
    for i in range(max(0, lo - 8), min(len(widths), lo + 8)):
        p = params(i)
        if p is not None and abs(p / target - 1) < best_err:
            best_i, best_err = i, abs(p / target - 1)
    if best_i is None:
        raise ValueError(f"no valid width for mixer {mixer!r} near d_model = {config.d_model}")
    matched = _candidate(config, mixer, widths[best_i])
    assert matched is not None
    n_params = cache[best_i]
    if mixer == "mamba2":
        # the nearest valid widths below and above, each with its best N; keep the closer count
        options = []
        for i in sorted((i for i in cache if cache[i] is not None), key=lambda i: abs(cache[i] - target))[:2]:
            cand = _candidate(config, mixer, widths[i])
            assert cand is not None
            options.append(_tune_state_size(cand, target, cache[i]))
        matched, n_params = min(options, key=lambda cn: abs(cn[1] - target))
    report = {
        "mixer": mixer, "target_params": target, "params": n_params, "rel_diff": n_params / target - 1,
        "d_model": matched.d_model, "mixer_options": dict(matched.mixer_options), "tolerance": tolerance,
    }
    if abs(report["rel_diff"]) > tolerance:
        raise ValueError(
            f"cannot match parameters within tolerance={tolerance}: best {mixer} width {matched.d_model} gives "
            f"{report['params']} vs {target} ({report['rel_diff']:+.1%}); use a larger d_model or tolerance"
        )
    return matched, report


def _tune_state_size(config: SessaConfig, target: int, n_params: int) -> tuple[SessaConfig, int]:
    """Fine step for Mamba2: one width step moves the count by several %, the SSM state size N (linear in
    the count) closes the gap; N stays within [N0 / 2, 4 N0] of the requested (or default) N0."""
    from sessa.layers.mamba2 import MAMBA2_DEFAULTS

    n0 = config.mixer_options.get("state_size", MAMBA2_DEFAULTS["state_size"])

    def with_n(n: int) -> SessaConfig:
        return dataclasses.replace(config, mixer_options={**config.mixer_options, "state_size": n})

    slope = count_parameters(with_n(n0 + 1)) - count_parameters(with_n(n0))
    p0 = count_parameters(with_n(n0))
    n = min(4 * n0, max(n0 // 2, round(n0 + (target - p0) / slope)))
    cand = with_n(n)
    p = count_parameters(cand)
    return (cand, p) if abs(p - target) < abs(n_params - target) else (config, n_params)
