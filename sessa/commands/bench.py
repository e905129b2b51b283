"""`sessa bench <task>`: train Sessa and the baselines with one budget and seeds; print a table, write
results.json, results.md and results.png into --out. The README's main job: `sessa bench symbolsoup`."""

from __future__ import annotations

import argparse
import os

from sessa.compare.presets import model_names


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="symbolsoup, diffuse_mqar, mqar, passkey, lm, or your own package.module:factory")
    p.add_argument("--preset", default="laptop",
                   help="laptop (default, ~2 min per model on 2 CPU cores), paper (~125M), paper-350m, "
                        "or a YAML file like configs/bench_laptop.yaml")
    p.add_argument("--models", default=None,
                   help=f"comma-separated subset of {','.join(model_names())} (default: all of them)")
    p.add_argument("--seeds", default=None, help="comma-separated ints (default: the preset's, laptop: 0)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per model (default: the preset's)")
    p.add_argument("--out", default="bench_out", help="folder for results.json / .md / .png (default bench_out)")
    p.add_argument("--tolerance", type=float, default=0.03,
                   help="allowed relative parameter-count difference of the matched baselines (default 0.03)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: tiny models gain little from more, and lose a lot "
                        "when the cores are shared)")
    p.add_argument("--jobs", type=int, default=None,
                   help="models trained at once, one process each (default: min(2, CPU count), or 1 with CUDA); "
                        "--jobs 1 trains them one after another in this process")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="override a task option, e.g. --task-option max_len=512 (repeatable)")


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    seeds = []
    for t in _csv(text):
        try:
            seeds.append(int(t))
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated ints, got {text!r}") from None
    return seeds


def run(args: argparse.Namespace) -> int:
    from sessa.commands.common import parse_key_values
    from sessa.compare.harness import run_bench
    from sessa.compare.report import format_table, write_outputs

    allowed = model_names()
    models = list(allowed) if args.models is None else _csv(args.models)
    bad = [m for m in models if m not in allowed]
    if bad or not models:
        raise ValueError(f"--models must be a comma-separated subset of {','.join(allowed)}, got {args.models!r}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.jobs is None:  # CPU: one model per core (2 on a laptop); GPU: one model at a time on the device
        import torch

        jobs = 1 if torch.cuda.is_available() else min(2, os.cpu_count() or 1)
    else:
        jobs = args.jobs
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if not 0 < args.tolerance < 1:
        raise ValueError(f"--tolerance must lie in (0, 1), got {args.tolerance}")
    results = run_bench(
        args.task, args.preset, models=models, seeds=_parse_seeds(args.seeds), steps=args.steps,
        task_options=parse_key_values(args.task_option, "--task-option"), tolerance=args.tolerance,
        threads=args.threads, jobs=jobs, allow_task_import=True,  # named on the command line: trusted
    )
    paths = write_outputs(results, args.out)
    print()
    print(format_table(results))
    print(f"\nwrote {paths['json']}, {paths['md']} and {paths['png']}")
    return 0
