"""Run `python -m sessa train` in a child process under the test-only hook of killhook/sitecustomize.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml
from train_helpers import HERE, TINY_MODEL, subprocess_env

from sessa.train import TrainConfig

HOOK_DIR = os.path.join(HERE, "killhook")
# a built-in task, so the child needs nothing from the tests folder to build it
MQAR = {"n_train": 64, "n_validation": 16, "n_test": 16, "seq_len": 16, "num_pairs": 2, "key_vocab": 4,
        "value_vocab": 4}


def kill_config(**overrides) -> TrainConfig:
    base = dict(model=dict(TINY_MODEL), task="mqar", task_options=dict(MQAR), steps=24, batch_size=8, grad_accum=1,
                lr=3e-3, warmup_steps=3, log_every=3, ckpt_every=4, eval_every=5, keep_last=2, eval_batches=1,
                progress=False, tensorboard=False)
    base.update(overrides)
    return TrainConfig(**base)


def write_config(path, cfg: TrainConfig) -> str:
    d = cfg.to_dict()
    d.pop("out_dir")
    with open(path, "w") as f:
        yaml.safe_dump(d, f)
    return str(path)


def start(config: str, out_dir, *flags: str, hook: dict | None = None) -> subprocess.Popen:
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([HOOK_DIR, env["PYTHONPATH"]])
    env["SESSA_TEST_HOOK"] = json.dumps({"no_transformers": True, "under": str(out_dir), **(hook or {})})
    cmd = [sys.executable, "-m", "sessa", "train", "--config", config, "--out-dir", str(out_dir), *flags]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the training child did not finish in {timeout} s: {err[-3000:]}") from None
    return proc.returncode, out, err


def wait_for(path, proc: subprocess.Popen, timeout: float = 120) -> bool:
    """True once `path` exists; False if the child exited first (never past the timeout)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            return os.path.exists(path)
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)
    return True


def sigkill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
