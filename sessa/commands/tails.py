"""`sessa tails`: memory tails of the paper's constructions (and optionally a checkpoint): JSON + log-log PNG."""

from __future__ import annotations

import argparse
import math
import os
import time


def _gammas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gammas must be comma-separated floats, got {text!r}") from None
    if not values or not all(0 < g < 0.999 for g in values):
        raise argparse.ArgumentTypeError(f"--gammas must be floats in (0, 0.999), got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (tails.json, tails.png)")
    p.add_argument("--checkpoint", help="a training checkpoint folder (or run folder) to measure as well")
    p.add_argument("--max-lag", type=int, default=None, help="longest lag (default 4096; 256 with --quick)")
    p.add_argument("--fit-min", type=int, default=None, help="shortest lag in the fits (default max-lag/64)")
    p.add_argument("--quick", action="store_true", help="small and fast: max-lag 256, 50 bootstrap samples")
    p.add_argument("--gammas", type=_gammas, default=[0.5, 0.9, 0.99], help="uniform-routing gains, e.g. 0.5,0.9")
    p.add_argument("--decay", type=float, default=0.99, help="per-step decay of the fixed-decay SSM, in (0, 1)")
    p.add_argument("--retrieval-gamma", type=float, default=0.9, help="gain of the selective-retrieval Sessa")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap samples per fit (default 200; 50 quick)")
    p.add_argument("--batch", type=int, default=2, help="random inputs averaged for --checkpoint")
    p.add_argument("--probes", default="4", help="'exact' or a number of random probes for --checkpoint")
    p.add_argument("--no-column", action="store_true",
                   help="--checkpoint: skip the fixed-source (forward-mode) end-to-end view, the slow one")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import torch

    from sessa.analysis.plot import Curve, plot_tails
    from sessa.analysis.tails import construction_tails, model_tails
    from sessa.utils.io import atomic_write_json, json_safe

    max_lag = args.max_lag if args.max_lag is not None else (256 if args.quick else 4096)
    n_boot = args.n_boot if args.n_boot is not None else (50 if args.quick else 200)
    if n_boot < 0:
        raise ValueError(f"--n-boot must be >= 0, got {n_boot}")
    probes = args.probes if args.probes == "exact" else _int_arg("--probes", args.probes)
    if not 0 < args.decay < 1:
        raise ValueError(f"--decay must be in (0, 1), got {args.decay}")
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    curves = construction_tails(
        max_lag, gammas=args.gammas, fit_min=args.fit_min, decay=args.decay,
        retrieval_gamma=args.retrieval_gamma, n_boot=n_boot,
    )
    result = {
        "settings": {"max_lag": max_lag, "fit_min": args.fit_min or max(1, max_lag // 64), "n_boot": n_boot,
                     "quick": args.quick, "seed": args.seed},
        "constructions": curves,
    }
    if args.checkpoint:
        from sessa.train.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint)
        result["checkpoint"] = {"path": os.path.abspath(args.checkpoint), **model_tails(
            model, max_lag=max_lag, batch=args.batch, probes=probes, seed=args.seed, n_boot=n_boot,
            column=not args.no_column)}
    result["wall_time_s"] = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    json_path, png_path = os.path.join(args.out, "tails.json"), os.path.join(args.out, "tails.png")
    atomic_write_json(json_path, json_safe(result))
    plot_tails(_curves(result, Curve), png_path, title=f"Memory tails (max lag {max_lag})",
               fit_range=(result["settings"]["fit_min"], max_lag))
    _print_table(result)
    print(f"wrote {json_path} and {png_path}")
    return 0


def _int_arg(name: str, text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"{name} must be 'exact' or an int >= 1, got {text!r}") from None
    if v < 1:
        raise ValueError(f"{name} must be 'exact' or an int >= 1, got {v}")
    return v


def _curves(result: dict, Curve) -> list:
    out = []
    sections = [("constructions", result["constructions"])]
    if "checkpoint" in result:
        sections.append(("checkpoint", {k: v for k, v in result["checkpoint"].items() if isinstance(v, dict)}))
    for panel, entries in sections:
        for name, e in entries.items():
            lags, values = e["profile"]["lags"], e["profile"]["values"]
            th = e.get("theory", {})
            slope = th.get("beta") if th.get("law") in ("power", "flat") else None
            theory = theory_label = None
            if th.get("law") == "exp":  # draw the exponential itself through the curve's value at lag 1
                v1 = values[lags.index(1)] if 1 in lags else values[0]
                theory = [v1 * math.exp(-th["kappa"] * (lag - 1)) for lag in lags]
                theory_label = f"theory: exp(-{th['kappa']:.3g} l)"
            label = name
            law = "exp" if th.get("law") == "exp" else ("power" if th else e.get("better"))
            if law in e:  # show the fitted parameter of the law the theory predicts (or the better fit)
                label += f" (fit {'kappa' if law == 'exp' else 'beta'}={e[law]['exponent']:.3g})"
            out.append(Curve(label, lags, values, slope=slope, anchor=e["fit_range"][0],
                             theory=theory, theory_label=theory_label, panel=panel))
    return out


def _print_table(result: dict) -> None:
    rows = list(result["constructions"].items())
    rows += [(f"ckpt/{k}", v) for k, v in result.get("checkpoint", {}).items() if isinstance(v, dict)]
    print(f"{'curve':34s} {'theory':>14s} {'power beta [CI]':>28s} {'exp kappa':>10s} {'better':>6s}")
    for name, e in rows:
        th = e.get("theory", {})
        th_s = f"beta={th['beta']:.3g}" if "beta" in th else (f"kappa={th['kappa']:.3g}" if "kappa" in th else "-")
        if "power" not in e:
            print(f"{name:34s} {th_s:>14s} {'fit failed: ' + e.get('error', '?')[:40]}")
            continue
        p, x = e["power"], e["exp"]
        ci = f"{p['exponent']:.4f} [{p['ci_low']:.4f}, {p['ci_high']:.4f}]"
        print(f"{name:34s} {th_s:>14s} {ci:>28s} {x['exponent']:10.4g} {e['better']:>6s}")
