"""Parameter matching: pick a baseline's width so its model has as many parameters as the Sessa model it is
compared with, as the paper does ("parameter counts are matched").

Only the width d_model changes (and, for a mixer that names a `match_option` in the mixer table, e.g.
Mamba2's SSM state size N, that option as a fine step); depth, vocabulary, block structure, heads and the
training budget stay identical. A width is a candidate when the baseline's SessaConfig accepts it (heads
divide it, the mixer's own option checks pass).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sessa.layers.mixers import check_option_names, mixer_class, mixer_options
from sessa.models.config import SessaConfig
from sessa.utils.checks import check_float

DEFAULT_TOLERANCE = 0.03  # |params_baseline / params_sessa - 1| allowed


def count_parameters(config: SessaConfig) -> int:
    """Total distinct parameters of SessaLM(config), built on the meta device (no memory, no init cost)."""
    from sessa.models.lm import SessaLM

    with torch.device("meta"):
        model = SessaLM(config)
    return model.num_parameters()


def _candidate(config: SessaConfig, mixer: str, width: int, options: dict[str, Any]) -> SessaConfig | None:
    """The baseline config at this width, or None when the config refuses the width (heads, options)."""
    try:
        return dataclasses.replace(config, d_model=width, mixer=mixer, mixer_options=dict(options))
    except ValueError:
        return None


def match_baseline(
    config: SessaConfig, mixer: str, *, tolerance: float = DEFAULT_TOLERANCE, mixer_options: dict | None = None
) -> tuple[SessaConfig, dict[str, Any]]:
    """Return (baseline config, report) whose parameter count is closest to SessaLM(config)'s.

    mixer_options: the baseline's options to start from (its match_option is then tuned around them).
    The report holds target and matched counts, the relative difference and the chosen width. Raises
    ValueError when no width within `tolerance` exists (e.g. very tiny models where one width step is
    already more than the tolerance).
    """
    if not isinstance(config, SessaConfig):
        raise TypeError(f"config must be a SessaConfig, got {type(config).__name__}")
    check_float("tolerance", tolerance, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    cls = mixer_class(mixer)
    options = dict(mixer_options or {})
    check_option_names(mixer, options)  # an unknown key is an error here, not "no valid width"
    target = count_parameters(config)
    step = 2 * config.n_heads if config.rope else config.n_heads
    widths = list(range(step, 4 * config.d_model + step, step))
    cache: dict[int, int | None] = {}

    def params(i: int) -> int | None:
        if i not in cache:
            cand = _candidate(config, mixer, widths[i], options)
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
    matched = _candidate(config, mixer, widths[best_i], options)
    assert matched is not None
    n_params = cache[best_i]
    if cls.match_option is not None:
        # the nearest valid widths below and above, each with its best option value; keep the closer count
        tuned = []
        for i in sorted((i for i in cache if cache[i] is not None), key=lambda i: abs(cache[i] - target))[:2]:
            cand = _candidate(config, mixer, widths[i], options)
            assert cand is not None
            tuned.append(_tune_option(cand, cls.match_option, target, cache[i]))
        matched, n_params = min(tuned, key=lambda cn: abs(cn[1] - target))
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


def _tune_option(config: SessaConfig, name: str, target: int, n_params: int) -> tuple[SessaConfig, int]:
    """Fine step: one width step moves the count by several %, an int option linear in the count (Mamba2's
    state size N) closes the gap; it stays within [n0 / 2, 4 n0] of the requested (or default) n0."""
    n0 = mixer_options(config)[name]

    def with_n(n: int) -> SessaConfig:
        return dataclasses.replace(config, mixer_options={**config.mixer_options, name: n})

    slope = count_parameters(with_n(n0 + 1)) - count_parameters(with_n(n0))
    p0 = count_parameters(with_n(n0))
    if slope <= 0:
        return config, n_params
    n = min(4 * n0, max(n0 // 2, round(n0 + (target - p0) / slope)))
    try:
        cand = with_n(n)
    except ValueError:
        return config, n_params
    p = count_parameters(cand)
    return (cand, p) if abs(p - target) < abs(n_params - target) else (config, n_params)
