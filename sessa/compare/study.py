"""`sessa bench paper`: the paper's three results and length-extrapolation curves, in one resumable study.

    run_study("bench_paper", preset="laptop", seeds=[0, 1, 2])

Parts (each a `run_bench` into its own sub-folder, so every finished model/seed is kept and reused):

    symbolsoup     Table 1: SymbolSoup test accuracy
    diffuse_mqar   Table 1: Diffuse MQAR test accuracy; its test lags reach 8x the longest training lag
    lm             Table 2: perplexity, top-1 and top-5 next-token accuracy on the offline corpus
    mqar, passkey  accuracy vs lag / distance out to 8x the longest training one (curves only)
SymbolSoup also gets a curve: accuracy vs the distance from the label back to the first styled block.

Writes <out>/results.json (every part), <out>/results.md (the tables with the paper's numbers beside ours,
the curves, the wall time) and <out>/extrapolation_<task>.png per recall task.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from sessa.compare.harness import run_bench
from sessa.utils.io import atomic_write_bytes, atomic_write_json, atomic_write_text, json_safe

# part -> (task, task options over the preset's, role); recall parts test far beyond their training lags
PARTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "symbolsoup": ("symbolsoup", {}, "table+curve"),  # curve: accuracy vs distance to the first styled block
    "diffuse_mqar": ("diffuse_mqar", {"test_lag_factor": 8}, "table+curve"),
    "lm": ("lm", {}, "table"),
    "mqar": ("mqar", {"test_seq_len": 1024}, "curve"),
    # trained at distance 128 (lag 134), tested at lags 134 k for k = 1..8
    "passkey": ("passkey", {"test_distance": [128, 262, 396, 530, 664, 798, 932, 1066]}, "curve"),
}
TITLES = {"symbolsoup": "SymbolSoup (Table 1)", "diffuse_mqar": "Diffuse MQAR (Table 1)",
          "lm": "Short-context language modelling (Table 2)", "mqar": "MQAR", "passkey": "Passkey"}


def _check_parts(parts: list[str] | None) -> list[str]:
    parts = list(PARTS) if parts is None else parts
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts or len(set(parts)) != len(parts):
        raise ValueError(f"parts must be distinct entries of {list(PARTS)}, got {parts!r}")
    return parts


def run_study(out_dir: str, preset: str = "laptop", *, parts: list[str] | None = None,
              models: list[str] | None = None, seeds: list[int] | None = None, jobs: int = 1,
              threads: int | None = 1, progress: bool = True, log: Callable[[str], None] | None = print,
              train: bool = True) -> dict[str, Any]:
    """Run (or resume) every part into out_dir/<part>/ and write the combined report; returns its data.
    train=False writes the report from the runs finished so far and trains nothing."""
    from sessa.compare.report import format_curve_table, format_table, plot_extrapolation

    parts = _check_parts(parts)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out must be a folder, but {out_dir!r} is a file")
    say = log or (lambda _s: None)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"preset": preset, "parts": {}}
    for part in parts:
        task, options, role = PARTS[part]
        say(f"\n== {part} ==")
        results["parts"][part] = run_bench(
            task, preset, models=models, seeds=seeds, task_options=options, threads=threads, jobs=jobs, log=log,
            out_dir=os.path.join(out_dir, part), progress=progress, train=train)
        results["parts"][part]["role"] = role
    results["total_time_s"] = time.perf_counter() - t0  # this invocation only (resumed runs cost nothing)
    md = [f"# sessa bench paper (preset {preset})", ""]
    for part, res in results["parts"].items():
        md += [f"## {TITLES[part]}", ""]
        if "curve" in res["role"]:
            png = f"extrapolation_{part}.png"
            atomic_write_bytes(os.path.join(out_dir, png), plot_extrapolation(res))
            md += [f"![accuracy vs lag, {part}]({png})", "", format_curve_table(res), ""]
        md += [format_table(res), ""]
    runs = [r for res in results["parts"].values() for m in res["models"].values() for r in m["runs"]]
    results["run_time_s"] = sum(r["wall_time_s"] for r in runs)
    md.append(f"Training time of the {len(runs)} finished runs (summed; tests add about 10-60 s per run): "
              f"{results['run_time_s'] / 60:.0f} min. Wall time of this invocation: {results['total_time_s']:.0f} s "
              "(runs read back from earlier invocations cost nothing here).")
    atomic_write_json(os.path.join(out_dir, "results.json"), json_safe(results))
    atomic_write_text(os.path.join(out_dir, "results.md"), "\n".join(md) + "\n")
    return json_safe(results)
