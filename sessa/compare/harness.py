"""The comparison harness: train Sessa and the baselines with one budget and seeds, evaluate on the test split.

    run_bench("symbolsoup", preset="laptop", models=["sessa", "attention", "mamba2", "sessa-nofb"], seeds=[0])

Models are "the same gated block with the mixer swapped": "sessa" is the preset's model, every other mixer
of `sessa.layers.mixers.MIXERS` (attention, mamba2, ...) gets the width chosen by `match_baseline` so its
parameter count matches "sessa" within the tolerance, and "sessa-nofb" is the paper's ablation (same config
with feedback=False, width unchanged). Everything else - depth, vocabulary, optimizer, schedule, steps,
batch, data order per seed - is identical.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from sessa.compare.loop import bench_config, budget_dict, evaluate_binned, train_model
from sessa.compare.matching import DEFAULT_TOLERANCE, match_baseline
from sessa.compare.presets import VARIANTS, get_preset, model_names
from sessa.models.config import SessaConfig
from sessa.utils.checks import check_float, check_int
from sessa.utils.io import json_safe

# Paper's Table 1 / Table 2 (test, mean ± std over 2 seeds), for the report.
PAPER_REFERENCE: dict[str, dict[str, Any]] = {
    "symbolsoup": {"metric": "accuracy", "scale": "~125M-350M params, length 2048", "values": {
        "sessa": [0.8601, 0.0016], "attention": [0.7921, 0.0070], "mamba2": [0.0500, 0.0000]}},
    "diffuse_mqar": {"metric": "accuracy", "scale": "~125M-350M params", "values": {
        "sessa": [0.1541, 0.0071], "attention": [0.1222, 0.0003], "mamba2": [0.0021, 0.0000]}},
    "lm": {"metric": "perplexity", "scale": "SimpleStories, ~125M-350M params", "values": {
        "attention": [7.6701, 0.0313], "mamba2": [7.7229, 0.0207], "sessa": [8.3700, 0.0482],
        "sessa-nofb": [8.0902, 0.0192]}},
}


def _check_list(name: str, values: object, allowed: tuple[str, ...] | None = None) -> list:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat entries, got {list(values)}")
    for v in values:
        if allowed is not None and v not in allowed:
            raise ValueError(f"{name} entries must be among {list(allowed)}, got {v!r}")
        if allowed is None:
            check_int(f"{name} entries", v, lo=0)
    return list(values)


def model_configs(
    base: SessaConfig, models: list[str], tolerance: float = DEFAULT_TOLERANCE,
    mixer_options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, tuple[SessaConfig, dict[str, Any]]]:
    """name -> (config, matching report) for each requested model (see module docstring).

    mixer_options: mixer name -> the options its baseline starts from (e.g. {"mamba2": {"head_dim": 64}});
    a mixer's match_option is then tuned around the given value to match the parameter count."""
    _check_list("models", models, model_names())
    out: dict[str, tuple[SessaConfig, dict[str, Any]]] = {}
    for name in models:
        if name == base.mixer:
            out[name] = (base, {"matched": "reference"})
        elif name in VARIANTS:
            out[name] = (dataclasses.replace(base, **VARIANTS[name]), {"matched": "ablation: same width as sessa"})
        else:
            opts = (mixer_options or {}).get(name)
            cfg, report = match_baseline(base, name, tolerance=tolerance, mixer_options=opts)
            out[name] = (cfg, {"matched": "width", **report})
    return out


def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single seed: one seed shows no spread)."""
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def headline_metric(task: Any) -> str:
    """The metric the table leads with: accuracy for recall / classification, perplexity for LM."""
    return "accuracy" if "accuracy" in task.metric_names else "perplexity"


def run_one(model: dict[str, Any], task_name: str, task_options: dict[str, Any], budget: dict[str, Any],
            seed: int, threads: int, allow_import: bool = False, task: Any = None,
            progress_bar: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one model for one seed and score it on the test split (a process-pool job: plain-data args).
    progress_bar: tqdm arguments (desc, position) for a per-step bar; None trains without one."""
    from sessa.tasks import build_task

    torch.set_num_threads(threads)
    task = task if task is not None else build_task(task_name, allow_import=allow_import, **task_options)
    cfg = bench_config(budget, SessaConfig(**model), task, seed)
    if progress_bar is not None:
        cfg = dataclasses.replace(cfg, progress=True)
        progress_bar = {"position": _WORKER_SLOT, "leave": False, **progress_bar}
    trained = train_model(cfg, task, progress_bar)
    test = evaluate_binned(trained["model"], task, "test", cfg)
    hist = [h["loss"] for h in trained["history"]]
    k = max(1, len(hist) // 10)
    return {"seed": seed, "test": test, "params": trained["model"].num_parameters(),
            "tokens_per_s": trained["tokens_per_s"], "wall_time_s": trained["wall_time_s"],
            "steps_done": trained["steps_done"], "loss_history": hist,
            "first_loss": statistics.fmean(hist[:k]), "last_loss": statistics.fmean(hist[-k:])}


_WORKER_SLOT = 0  # this process's progress-bar row (set per pool worker, so parallel bars do not overlap)


def _init_worker(counter: Any) -> None:
    global _WORKER_SLOT
    with counter.get_lock():
        _WORKER_SLOT = counter.value
        counter.value += 1


def summarize(configs: dict[str, tuple[SessaConfig, dict[str, Any]]], done: dict[tuple[str, int], dict[str, Any]],
              seeds: list[int]) -> dict[str, Any]:
    """Per model with at least one finished seed: config, params, match, runs, mean ± std of each metric."""
    out: dict[str, Any] = {}
    for name, (cfg, match) in configs.items():
        runs = [done[(name, s)] for s in seeds if (name, s) in done]
        if not runs:
            continue
        summary = {}
        for m in ("accuracy", "loss", "perplexity", "top5"):
            xs = [r["test"].get(m) for r in runs]
            mean, std = _mean_std(xs) if all(isinstance(x, (int, float)) for x in xs) else (None, None)
            summary[m] = {"mean": mean, "std": std}
        out[name] = {
            "config": cfg.to_dict(), "params": runs[0]["params"], "match": match, "runs": runs, "summary": summary,
            "tokens_per_s": statistics.fmean(r["tokens_per_s"] for r in runs),
            "wall_time_s": statistics.fmean(r["wall_time_s"] for r in runs),
        }
    return out


def run_bench(
    task_name: str,
    preset: str = "laptop",
    *,
    models: list[str] | None = None,
    seeds: list[int] | None = None,
    steps: int | None = None,
    task_options: dict[str, Any] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    threads: int | None = None,
    jobs: int = 1,
    log: Callable[[str], None] | None = print,
    allow_task_import: bool = False,
    out_dir: str | None = None,
    progress: bool = False,
    train: bool = True,
) -> dict[str, Any]:
    """Train every model for every seed, evaluate on the test split, return a JSON-able results dict.

    threads: torch intra-op threads during the run (restored afterwards); None keeps torch's setting.
    Tiny models gain little from several threads and lose a lot when the cores are shared.
    jobs: models trained at once in separate processes (each with `threads` threads).
    allow_task_import: task_name may be a trusted "package.module:factory" (sessa.tasks.build_task).
    out_dir: each finished (model, seed) is saved there at once (sessa.compare.runs) with results.json/.md/.png
    rewritten; runs already there with the same settings are loaded instead of trained (resume).
    progress: a tqdm bar per model run (steps, loss, tokens/s).
    train: False reports the runs finished in out_dir and trains nothing (the rest is listed as missing).
    """
    check_int("jobs", jobs, lo=1)
    check_float("tolerance", tolerance, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if check_int("threads", threads, lo=1, none_ok=True) is not None:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run_bench(task_name, preset, models=models, seeds=seeds, steps=steps,
                             task_options=task_options, tolerance=tolerance, threads=None, jobs=jobs, log=log,
                             allow_task_import=allow_task_import, out_dir=out_dir, progress=progress,
                             train=train)
        finally:
            torch.set_num_threads(before)
    from sessa.compare.report import write_outputs
    from sessa.compare.runs import load_run, run_settings, save_run
    from sessa.tasks import build_task, check_task_name

    check_task_name(task_name, allow_import=allow_task_import)
    p = get_preset(preset)
    models = _check_list("models", list(model_names()) if models is None else models, model_names())
    seeds = _check_list("seeds", p["seeds"] if seeds is None else seeds)
    per_task = p.get("per_task", {}).get(task_name, {})
    budget_opts = {**p["budget"], **per_task.get("budget", {})}
    if steps is not None:
        check_int("steps", steps, lo=1)
        budget_opts["steps"] = steps
        budget_opts["warmup_steps"] = min(budget_opts.get("warmup_steps", 0), max(0, steps // 10))
    opts = {**p["tasks"].get(task_name, {}), **(task_options or {})}
    task = build_task(task_name, allow_import=allow_task_import, **opts)
    model_opts = {**p["model"], **per_task.get("model", {}), "vocab_size": task.vocab_size}
    if hasattr(task, "max_seq_len"):  # recall tasks may test on sequences longer than the preset's limit
        model_opts["max_seq_len"] = max(model_opts.get("max_seq_len", 0), task.max_seq_len("test"))
    base = SessaConfig(**model_opts)
    budget = budget_dict(bench_config(budget_opts, base, task, 0))  # checked by TrainConfig, defaults filled in
    configs = model_configs(base, models, tolerance, p.get("mixer_options"))
    metric = headline_metric(task)
    say = log or (lambda _s: None)
    say(f"sessa bench {task_name} (preset {preset}): {len(models)} models x {len(seeds)} seeds, "
        f"{budget['steps']} steps of batch {budget['batch_size']}")
    results: dict[str, Any] = {
        "task": task_name, "task_options": dict(task.options), "preset": preset, "metric": metric,
        "budget": budget, "seeds": seeds, "models": {},
        "torch_threads": torch.get_num_threads(), "jobs": jobs, "torch_version": torch.__version__,
        "paper_reference": PAPER_REFERENCE.get(task_name),
        # recall tasks: the longest training lag, where extrapolation starts
        "max_train_lag": task.longest_lag("train") if hasattr(task, "longest_lag") else None,
    }
    t_start = time.perf_counter()
    args = {(name, seed): (configs[name][0].to_dict(), task_name, dict(task.options), budget,
                           seed, torch.get_num_threads(), allow_task_import)
            for seed in seeds for name in configs}  # seed-major: every model gets a seed before any gets two
    settings = {key: run_settings(task_name, a[2], budget, a[0], key[1]) for key, a in args.items()}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for key in args:
        if out_dir is not None and (run := load_run(out_dir, key[0], key[1], settings[key])) is not None:
            done[key] = run
            say(f"  {key[0]:<11} seed {key[1]}: finished earlier, read from {out_dir}")
    todo = [key for key in args if key not in done]
    if not train:
        if out_dir is None:
            raise ValueError("train=False reports the runs saved in out_dir: give out_dir")
        if todo:
            say(f"  not trained (report only): {', '.join(f'{n} seed {s}' for n, s in todo)}")
        todo = []

    def snapshot() -> dict[str, Any]:
        return json_safe({**results, "models": summarize(configs, done, seeds),
                          "total_time_s": time.perf_counter() - t_start, "complete": len(done) == len(args)})

    def report(key: tuple[str, int], run: dict[str, Any]) -> None:
        done[key] = run
        if out_dir is not None:  # saved at once: an interruption loses at most the runs in flight
            save_run(out_dir, key[0], key[1], settings[key], run)
            write_outputs(snapshot(), out_dir)
        value = run["test"][metric]
        say(f"  {key[0]:<11} seed {key[1]}: test {metric} {'n/a' if value is None else f'{value:.4f}'}, "
            f"loss {run['test']['loss']:.4f}, {run['tokens_per_s']:.0f} tok/s, {run['wall_time_s']:.1f} s")

    def bar(key: tuple[str, int]) -> dict[str, Any] | None:
        return {"desc": f"{key[0]} seed {key[1]}"} if progress else None

    if jobs == 1 or len(todo) <= 1:
        for key in todo:
            report(key, run_one(*args[key], task=task, progress_bar=bar(key)))
    else:  # one model per process, each with `threads` threads: on 2 free cores, 2 models train at once
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(ctx.Value("i", 0),)) as pool:
            futures = {pool.submit(run_one, *args[key], progress_bar=bar(key)): key for key in todo}
            for fut in as_completed(futures):
                report(futures[fut], fut.result())
    final = snapshot()  # JSON has no NaN/Inf: a diverged metric is reported as null
    if out_dir is not None and done and not todo:  # every run read back (resume, report-only): report() wrote
        write_outputs(final, out_dir)               # nothing, so the folder's outputs are written here
    return final
