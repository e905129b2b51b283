"""Measure and fit the memory tails of the constructions and of a trained model (used by `sessa tails`).

Every entry: the measured lag profile (thinned to log-spaced lags for the JSON), the power-law and
exponential fits on the same lags with confidence intervals, which model fits better, and the theory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sessa.analysis import constructions as C
from sessa.analysis.fit import compare_tails, geometric_lags
from sessa.analysis.influence import lag_profile, mixer_feedback_influence
from sessa.analysis.jacobians import embed_inputs, jacobian_norms, jacobian_norms_jvp, transport_scores
from sessa.utils.checks import check_int


def fit_entry(profile: torch.Tensor | np.ndarray, fit_range: tuple[int, int], *, n_boot: int = 200,
              theory: dict | None = None, n_keep: int = 160) -> dict:
    """JSON-able summary of one lag profile (index = lag): fits, better model, theory, thinned curve."""
    y = np.abs(np.asarray(profile, dtype=np.float64))
    lags = np.arange(y.size)
    entry: dict = {"theory": theory or {}, "fit_range": list(fit_range)}
    try:
        cmp = compare_tails(lags, y, lag_range=fit_range, n_boot=n_boot)
        entry["power"], entry["exp"] = cmp["power"].to_dict(), cmp["exp"].to_dict()
        entry["better"] = cmp["better"]
    except ValueError as e:  # e.g. a zero influence inside the range: record it, do not hide it
        entry["error"] = str(e)
    if theory and "beta" in theory and "power" in entry:
        entry["beta_error"] = entry["power"]["exponent"] - theory["beta"]
    if theory and "kappa" in theory and "exp" in entry:
        entry["kappa_error"] = entry["exp"]["exponent"] - theory["kappa"]
    keep = np.concatenate([[0], geometric_lags(1, y.size - 1, n_keep)]) if y.size > 2 else lags
    entry["profile"] = {"lags": keep.tolist(), "values": y[keep].tolist()}
    return entry


def construction_tails(
    max_lag: int = 4096,
    *,
    gammas: Sequence[float] = (0.5, 0.9, 0.99),
    fit_min: int | None = None,
    decay: float = 0.99,
    retrieval_gamma: float = 0.9,
    sharpness: float = 30.0,
    n_boot: int = 200,
    impl: str = "auto",
) -> dict:
    """Run the four constructions up to max_lag and fit each; fit range [fit_min, max_lag] (default max_lag/64)."""
    check_int("max_lag", max_lag, lo=1)
    if max_lag < 8:
        raise ValueError(f"max_lag must be >= 8 to fit a tail, got {max_lag}")
    fit_min = max(1, max_lag // 64) if fit_min is None else check_int("fit_min", fit_min, lo=1)
    if fit_min * 4 > max_lag:
        raise ValueError(f"fit_min ({fit_min}) must be <= max_lag / 4 ({max_lag / 4:g}) for a meaningful fit")
    rng = (fit_min, max_lag)
    out: dict = {}
    for g in gammas:
        prof = C.uniform_routing_influence(g, max_lag, impl=impl)
        out[f"sessa_uniform_gamma{g:g}"] = fit_entry(
            prof, rng, n_boot=n_boot, theory={"law": "power", "beta": 1 - g, "source": "docs/equations.md §5"}
        )
    out["attention_uniform"] = fit_entry(
        C.uniform_attention_influence(max_lag), rng, n_boot=n_boot, theory={"law": "power", "beta": 1.0}
    )
    out[f"ssm_fixed_decay{decay:g}"] = fit_entry(
        C.fixed_decay_influence(max_lag, decay=decay), rng, n_boot=n_boot,
        theory={"law": "exp", "kappa": -math.log(decay)},
    )
    prof = C.selective_retrieval_influence(max_lag, gamma=retrieval_gamma, sharpness=sharpness, impl=impl)
    entry = fit_entry(prof, rng, n_boot=n_boot, theory={"law": "flat", "beta": 0.0, "level": retrieval_gamma})
    small = min(16, max_lag)
    entry["ratio_max_to_lag16"] = float(prof[max_lag] / prof[small])
    out[f"sessa_retrieval_gamma{retrieval_gamma:g}"] = entry
    return out


def _random_ids(model: nn.Module, batch: int, T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (batch, T), generator=g)


def model_tails(
    model: nn.Module,
    *,
    max_lag: int = 4096,
    batch: int = 2,
    probes: int | str = 4,
    seed: int = 0,
    n_boot: int = 200,
    input_ids: torch.Tensor | None = None,
    column: bool = True,
) -> dict:
    """Tails of a language model's residual stream h^(0) (embeddings) -> h^(N) (last block), fitted.

    Two views of the same Jacobian (they differ: with causal normalisation the influence is not a function
    of the lag alone): "row" = fixed target t = T - 1, every source t - l (one backward per probe);
    "column" = fixed source 0, every target l (the constructions' view; forward mode, one pass per probe).
    Also a transport score (row view) and each Sessa layer's fixed-routing feedback influence (both views).
    Inputs are random token ids (or your input_ids [B, T]).
    """
    decoder = getattr(model, "model", None)
    if not (hasattr(model, "config") and hasattr(decoder, "embed_tokens") and hasattr(decoder, "layers")):
        raise TypeError(f"model must be a SessaLM-like language model (with .config, .model.embed_tokens and "
                        f".model.layers), got {type(model).__name__}")
    check_int("max_lag", max_lag, lo=1)
    if input_ids is None:
        T = min(max_lag + 1, model.config.max_seq_len)
        input_ids = _random_ids(model, check_int("batch", batch, lo=1), T, seed)
    T = input_ids.shape[1]
    if T < 9:
        raise ValueError(f"need at least 9 positions to fit a tail, got T = {T}")
    model.eval()
    h0 = embed_inputs(model, input_ids)
    rng = (max(1, (T - 1) // 64), T - 1)
    out: dict = {"T": T, "batch": int(input_ids.shape[0]), "target": T - 1, "probes": probes}
    prof = jacobian_norms(model, h0, probes=probes, seed=seed).mean(0)
    out["end_to_end_row"] = fit_entry(prof, rng, n_boot=n_boot)
    if column:
        prof = jacobian_norms_jvp(model, h0, source=0, probes=probes, seed=seed).mean(0)
        out["end_to_end_column"] = fit_entry(prof, rng, n_boot=n_boot)
    score = transport_scores(model, h0, seed=seed).abs().mean(0)
    out["transport"] = fit_entry(score, rng, n_boot=n_boot)
    # each layer's realised routing: capture the mixer inputs a_bar with forward pre-hooks
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        layer.mixer.register_forward_pre_hook(lambda m, args, i=i: captured.__setitem__(i, args[0].detach()))
        for i, layer in enumerate(model.model.layers)
        if hasattr(getattr(layer, "mixer", None), "feedback_inputs") and layer.mixer.feedback
    ]
    try:
        with torch.no_grad():
            model(input_ids)
    finally:
        for h in hooks:
            h.remove()
    for i, a_bar in sorted(captured.items()):
        mixer = model.model.layers[i].mixer
        row = mixer_feedback_influence(mixer, a_bar, target=T - 1)
        out[f"layer{i}_feedback_row"] = fit_entry(lag_profile(row, target=T - 1).abs().mean(0), rng, n_boot=n_boot)
        col = mixer_feedback_influence(mixer, a_bar, source=0)
        out[f"layer{i}_feedback_column"] = fit_entry(col.abs().mean(0), rng, n_boot=n_boot)
    return out
