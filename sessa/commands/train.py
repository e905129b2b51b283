"""`sessa train`: train from a YAML config and/or flags; `--launcher torchrun` re-executes under torchrun."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

from sessa.commands.common import threads_arg

# flag -> TrainConfig key (dotted for the model); None values are "not given" and leave the YAML alone
_FLAGS: dict[str, tuple[str, type]] = {
    "task": ("task", str), "steps": ("steps", int), "batch_size": ("batch_size", int),
    "grad_accum": ("grad_accum", int), "lr": ("lr", float), "warmup_steps": ("warmup_steps", int),
    "precision": ("precision", str), "seed": ("seed", int), "eval_every": ("eval_every", int),
    "eval_batches": ("eval_batches", int), "ckpt_every": ("ckpt_every", int), "keep_last": ("keep_last", int),
    "out_dir": ("out_dir", str), "stop_at": ("stop_at", int), "log_every": ("log_every", int),
    "device": ("device", str), "mixer": ("model.mixer", str), "d_model": ("model.d_model", int),
    "n_layers": ("model.n_layers", int), "n_heads": ("model.n_heads", int),
}
LAUNCHER_FLAGS = ("--launcher", "--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id",
                  "--rdzv-backend", "--master-addr", "--master-port")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML training config (see configs/); flags below override it")
    p.add_argument("--allow-task-import", action="store_true",
                   help="let the --config file name its own task as 'package.module:factory' (runs that code); "
                        "--task on the command line may always name one")
    for dest, (_, typ) in _FLAGS.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, type=typ, default=None)
    p.add_argument("--threads", type=threads_arg, default=None, metavar="N|auto",
                   help="torch CPU threads (default auto: the cores not busy with other work, shared among this "
                        "node's processes; OMP_NUM_THREADS, if set, is kept; a CUDA run keeps torch's setting)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a task option, e.g. --task-option seq_len=512 (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, dotted for nested ones: --set model.gamma_max=0.99 (repeatable)")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from the latest checkpoint in --out-dir, or from the given checkpoint folder")
    p.add_argument("--fsdp", action="store_true", default=None, help="under torchrun: FSDP2 instead of DDP")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    p.add_argument("--json", action="store_true", help="print the result dict as JSON at the end")
    g = p.add_argument_group("launching several processes (docs/training.md)")
    g.add_argument("--launcher", choices=("none", "torchrun"), default="none",
                   help="torchrun: re-run this command as `torchrun ... -m sessa train ...`")
    g.add_argument("--nproc-per-node", type=int, default=None)
    g.add_argument("--nnodes", default=None, help="e.g. 2 or 1:4 (elastic)")
    g.add_argument("--node-rank", type=int, default=None)
    g.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of the rendezvous (multi-node)")
    g.add_argument("--rdzv-id", default=None)
    g.add_argument("--rdzv-backend", default=None)
    g.add_argument("--master-addr", default=None)
    g.add_argument("--master-port", type=int, default=None)


def build_config(args: argparse.Namespace) -> Any:
    """YAML (if any) + flags + --task-option + --set, validated as a TrainConfig."""
    from sessa.commands.common import parse_key_values
    from sessa.train.config import TrainConfig, apply_overrides, load_yaml

    trusted = bool(getattr(args, "allow_task_import", False))
    base: dict[str, Any] = load_yaml(args.config, allow_task_import=trusted) if args.config else {}
    over: dict[str, Any] = {}
    for dest, (key, _) in _FLAGS.items():
        if getattr(args, dest) is not None:
            over[key] = getattr(args, dest)
    for name in ("fsdp", "progress", "threads"):
        if getattr(args, name) is not None:
            over[name] = getattr(args, name)
    if "threads" not in over and "threads" not in base:  # the command's default; TrainConfig's is None (keep)
        over["threads"] = "auto"
    if args.resume is not None:
        over["resume"] = True if args.resume == "auto" else args.resume
    over.update(parse_key_values(args.task_option, "--task-option", prefix="task_options."))
    over.update(parse_key_values(args.set, "--set"))
    return TrainConfig.from_dict(apply_overrides(base, over))


def strip_launcher(argv: list[str]) -> list[str]:
    """Drop the launcher flags (both '--flag value' and '--flag=value') from a `sessa train` argv."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCHER_FLAGS:
            skip = "=" not in a
            continue
        out.append(a)
    return out


def torchrun_command(args: argparse.Namespace, train_argv: list[str]) -> list[str]:
    """[python, -m, torch.distributed.run, <rendezvous flags>, -m, sessa, train, <train flags>]."""
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    for flag in LAUNCHER_FLAGS[1:]:
        v = getattr(args, flag[2:].replace("-", "_"))
        if v is not None:
            cmd += [flag, str(v)]
    if args.nproc_per_node is None:
        cmd += ["--nproc-per-node", "1"]
    return cmd + ["-m", "sessa", "train", *strip_launcher(train_argv)]


def _is_resume_flag(token: str) -> bool:
    name = token.split("=", 1)[0]
    return len(name) >= 4 and "--resume".startswith(name)  # argparse accepts unambiguous prefixes


def resume_command(argv: list[str]) -> str:
    """The command that continues a stopped run: the same flags, any --resume replaced by --resume auto."""
    flags, skip = [], False
    for i, tok in enumerate(argv):
        if skip:
            skip = False
            continue
        if _is_resume_flag(tok):
            skip = "=" not in tok and i + 1 < len(argv) and not argv[i + 1].startswith("-")
            continue
        flags.append(tok)
    flags += ["--resume", "auto"]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a torchrun worker: the launcher's flags are not known here
        nproc = os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])
        return shlex.join(["torchrun", "--nproc-per-node", nproc, "-m", "sessa", "train", *flags]) + \
            "  (or your own launch command with --resume auto)"
    if os.path.basename(sys.argv[0]).startswith("sessa"):
        return shlex.join(["sessa", "train", *flags])
    return shlex.join(["python", "-m", "sessa", "train", *flags])


def _train_argv(args: argparse.Namespace, argv: list[str] | None) -> list[str]:
    if argv is not None:
        return argv
    # `sessa train ...` / `python -m sessa train ...`: the flags after the sub-command name
    return sys.argv[sys.argv.index("train") + 1:] if "train" in sys.argv else []


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    if args.launcher == "torchrun":
        if argv is None:  # called from `sessa train ...`: the flags after the sub-command name
            argv = sys.argv[sys.argv.index("train") + 1:] if "train" in sys.argv else []
        build_config(args)  # fail fast on a bad config, before starting processes
        cmd = torchrun_command(args, argv)
        print("exec:", " ".join(cmd), file=sys.stderr)
        os.execv(cmd[0], cmd)
    from sessa.train import NonFiniteLossError, TrainingStopped, train

    cfg = build_config(args)
    try:
        result = train(cfg)
    except NonFiniteLossError as e:
        print(f"sessa train: stopped: {e}", file=sys.stderr)
        return 1
    except TrainingStopped as e:  # SIGTERM / SIGINT: the step was finished and a checkpoint written
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"sessa train: {e}\nresume with: {resume_command(_train_argv(args, argv))}",
                  file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        print("sessa train: aborted by a second interrupt; nothing more was saved (resume from the last "
              "checkpoint with --resume auto)", file=sys.stderr, flush=True)
        return 128 + 2
    if int(os.environ.get("RANK", "0")) == 0:
        if args.json:
            print(json.dumps({k: v for k, v in result.items() if k != "model"}, indent=2))
        else:
            final = ", ".join(f"{k} {v:.4g}" for k, v in result["final"].items())
            print(f"done: {result['steps']} steps, {result['params']:,} parameters, "
                  f"{result['tokens_per_s']:,.0f} tokens/s, {result['wall_time_s']:.1f} s; final {final}")
            if result["checkpoint"]:
                print(f"checkpoint: {result['checkpoint']}")
    return 0
