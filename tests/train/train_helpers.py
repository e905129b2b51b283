"""Shared helpers of the trainer tests: a tiny config on the synthetic task (tests/train/synthtask.py)."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from sessa.train import TrainConfig  # noqa: E402

TASK = "synthtask:build_synth_task"
TINY_MODEL = {"vocab_size": 16, "d_model": 32, "n_layers": 2, "max_seq_len": 16}


def tiny_config(**overrides) -> TrainConfig:
    """A few-second CPU run: 2 gated Sessa blocks of width 32 on 16-token synthetic sequences."""
    base = dict(model=dict(TINY_MODEL), task=TASK, task_options={"n_train": 64, "n_val": 16}, steps=6,
                batch_size=8, grad_accum=2, lr=3e-3, warmup_steps=2, log_every=1, eval_batches=1, progress=False)
    base.update(overrides)
    return TrainConfig(**base)


def subprocess_env() -> dict[str, str]:
    """Environment for child processes: the synthetic task importable, one thread each (2 shared cores)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env
