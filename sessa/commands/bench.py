"""`sessa bench <task>`: train Sessa and the baselines with one budget and seeds; print a table, write
results.json, results.md and results.png into --out, each model/seed as soon as it finishes (a rerun with the
same --out resumes). `sessa bench paper` runs the whole laptop study (sessa.compare.study)."""

from __future__ import annotations

import argparse
import os

# kept free of torch imports: `sessa bench --help` must stay fast


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="symbolsoup, diffuse_mqar, mqar, passkey, lm, your own package.module:factory, "
                                "or 'paper': the paper's three results and extrapolation curves in one study")
    p.add_argument("--preset", default="laptop",
                   help="laptop (default, about 2 min per model on 2 CPU cores), paper (~125M), paper-350m, "
                        "or a YAML file like configs/bench_laptop.yaml")
    p.add_argument("--models", default=None,
                   help="comma-separated model names (default: all; docs/bench.md describes them, an unknown "
                        "name lists them)")
    p.add_argument("--seeds", default=None, help="comma-separated ints (default: the preset's, laptop: 0)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per model (default: the preset's)")
    p.add_argument("--parts", default=None,
                   help="with 'paper': comma-separated parts of the study (default: all; an unknown name lists "
                        "them)")
    p.add_argument("--out", default=None,
                   help="folder for the results (default bench_out, or bench_paper for 'paper'); a finished "
                        "model/seed there with the same settings is read back, not trained again")
    p.add_argument("--tolerance", type=float, default=0.03,
                   help="allowed relative parameter-count difference of the matched baselines (default 0.03)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: tiny models gain little from more, and lose a lot "
                        "when the cores are shared)")
    p.add_argument("--jobs", type=int, default=None,
                   help="models trained at once, one process each (default: min(2, CPU count), or 1 with CUDA); "
                        "--jobs 1 trains them one after another in this process")
    p.add_argument("--no-progress", action="store_true", help="no per-step progress bar for each model run")
    p.add_argument("--report-only", action="store_true",
                   help="write the table from the runs already finished in --out; train nothing")
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


def _jobs(args: argparse.Namespace) -> int:
    if args.jobs is not None:
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        return args.jobs
    import torch  # CPU: one model per core (2 on a laptop); GPU: one model at a time on the device

    return 1 if torch.cuda.is_available() else min(2, os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    import sys

    from sessa.train import TrainingStopped

    try:
        return _run(args)
    except (TrainingStopped, KeyboardInterrupt) as e:  # SIGTERM / Ctrl-C: finished runs are already on disk
        out = args.out or ("bench_paper" if args.task == "paper" else "bench_out")
        print(f"sessa bench: stopped; the model runs that had finished are saved in {out}/ (the one in flight "
              "is not); run the same command again to resume", file=sys.stderr, flush=True)
        return e.exit_code if isinstance(e, TrainingStopped) else 130


def _run(args: argparse.Namespace) -> int:
    from sessa.commands.common import parse_key_values
    from sessa.compare.presets import model_names
    from sessa.compare.report import format_table

    allowed = model_names()
    models = None if args.models is None else _csv(args.models)
    if models is not None and (not models or [m for m in models if m not in allowed]):
        raise ValueError(f"--models must be a comma-separated subset of {','.join(allowed)}, got {args.models!r}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if not 0 < args.tolerance < 1:
        raise ValueError(f"--tolerance must lie in (0, 1), got {args.tolerance}")
    seeds, jobs, progress = _parse_seeds(args.seeds), _jobs(args), not args.no_progress
    if args.task == "paper":
        from sessa.compare.study import run_study

        for flag in ("steps", "task_option"):
            if getattr(args, flag):
                raise ValueError(f"--{flag.replace('_', '-')} is not used by 'sessa bench paper' (each part takes "
                                 "its budget from the preset; use a preset YAML file to change it)")
        from sessa.compare.study import TITLES

        out = args.out or "bench_paper"
        study = run_study(out, args.preset, parts=None if args.parts is None else _csv(args.parts), models=models,
                          seeds=seeds, jobs=jobs, threads=args.threads, progress=progress,
                          train=not args.report_only)
        for part, res in study["parts"].items():
            print(f"\n## {TITLES[part]}\n\n{format_table(res)}")
        print(f"\nwrote {os.path.join(out, 'results.md')} (tables, legends, curves) and results.json")
        return 0
    if args.parts is not None:
        raise ValueError("--parts is used only by 'sessa bench paper'")
    from sessa.compare.harness import run_bench

    out = args.out or "bench_out"
    results = run_bench(
        args.task, args.preset, models=models, seeds=seeds, steps=args.steps,
        task_options=parse_key_values(args.task_option, "--task-option"), tolerance=args.tolerance,
        threads=args.threads, jobs=jobs, allow_task_import=True,  # named on the command line: trusted
        out_dir=out, progress=progress, train=not args.report_only,
    )
    print()
    print(format_table(results))
    print(f"\nwrote {os.path.join(out, 'results.json')}, results.md and results.png")
    return 0
