"""`sessa eval --checkpoint DIR`: metrics of a saved model on a task split, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from sessa.commands.common import THREADS_HELP, device_arg, run_with_threads, threads_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint folder, or a run's out_dir (its latest checkpoint is used)")
    p.add_argument("--task", default=None,
                   help="task name or package.module:factory (default: the built-in task the checkpoint was "
                        "trained on; a checkpoint cannot make this command import code)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="override a task option (repeatable), e.g. --task-option seq_len=4096")
    p.add_argument("--split", default="validation", help="train, validation or test (default validation)")
    p.add_argument("--batches", type=int, default=None, help="evaluate only the first N batches (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=threads_arg, default="auto", metavar="N|auto", help=THREADS_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _task_spec(args: argparse.Namespace, folder: str) -> tuple[str, dict[str, Any]]:
    from sessa.commands.common import parse_key_values
    from sessa.tasks import check_task_name
    from sessa.train.checkpoint import CONFIG_FILE, MODEL_FILE, read_json, verify_checkpoint

    verify_checkpoint(folder, (MODEL_FILE, CONFIG_FILE), names=(MODEL_FILE, CONFIG_FILE))  # before trusting it
    saved = read_json(os.path.join(folder, CONFIG_FILE)).get("train") or {}
    if not isinstance(saved, dict):
        raise ValueError(f"{os.path.join(folder, CONFIG_FILE)}: 'train' must be a mapping")
    if args.task is not None:  # typed by the user: may name their own factory
        name = check_task_name(args.task, allow_import=True, source="--task")
    elif saved.get("task") is not None:  # from a file: built-in tasks only
        name = check_task_name(saved["task"], allow_import=False,
                               source=f"the task recorded in {os.path.join(folder, CONFIG_FILE)}")
    else:
        raise ValueError(f"{folder} does not record its task (exported with save_model): pass --task NAME")
    options = dict(saved.get("task_options") or {}) if name == saved.get("task") else {}
    options.update(parse_key_values(args.task_option, "--task-option"))
    return name, options


def run(args: argparse.Namespace) -> int:
    """The command with --threads applied; torch's thread count is restored afterwards (in-process callers)."""
    return run_with_threads(args, _run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from sessa.tasks import build_task
    from sessa.train.checkpoint import load_checkpoint, resolve_checkpoint
    from sessa.train.distributed import DistInfo
    from sessa.train.evaluate import evaluate

    folder = resolve_checkpoint(args.checkpoint)
    name, options = _task_spec(args, folder)
    task = build_task(name, allow_import=args.task is not None, **options)
    model = load_checkpoint(folder, device=args.device)
    if task.vocab_size > model.config.vocab_size:
        raise ValueError(f"task {name!r} has vocab_size {task.vocab_size} > the model's {model.config.vocab_size}")
    metrics = evaluate(model, task, args.split, args.batches, batch_size=args.batch_size, precision=args.precision,
                       info=DistInfo(device=torch.device(args.device)))
    result = {"checkpoint": folder, "task": name, "split": args.split, "params": model.num_parameters(), **metrics}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0
