"""SIGKILL a training process while it writes a checkpoint: the previous checkpoint stays intact and loadable,
and resuming from it continues the run."""

import os
import signal
import subprocess
import sys
import time

import torch
from train_helpers import TASK, TINY_MODEL, subprocess_env

from sessa.train import load_checkpoint, train
from sessa.train.checkpoint import PAUSE_ENV, latest_checkpoint, list_checkpoints
from sessa.train.config import TrainConfig


def _cfg(out_dir, **kw):
    return TrainConfig(model=dict(TINY_MODEL), task=TASK, task_options={"n_train": 64, "n_val": 16}, steps=4,
                       batch_size=8, grad_accum=1, warmup_steps=1, lr=3e-3, ckpt_every=2, eval_batches=1,
                       log_every=1, progress=False, out_dir=str(out_dir), **kw)


def test_sigkill_mid_save_keeps_previous_checkpoint(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "writing"
    code = f"import json\nfrom sessa.train import train\nfrom sessa.train.config import TrainConfig\n" \
           f"train(TrainConfig.from_dict(json.loads({__import__('json').dumps(_cfg(out).to_dict())!r})))\n"
    env = subprocess_env()
    env[PAUSE_ENV] = f"4:120:{marker}"  # the step-4 save sleeps after writing its weights
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the writer never reached the step-4 save"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    root = str(out / "checkpoints")
    leftovers = [n for n in os.listdir(root) if n.startswith(".tmp-")]
    assert leftovers, "the killed save should have left its temp folder (never visible as a checkpoint)"
    assert [s for s, _ in list_checkpoints(root)] == [2]
    assert latest_checkpoint(root).endswith("step_00000002")
    model = load_checkpoint(out)  # verified against the recorded sha256 of every file
    assert torch.isfinite(model(torch.zeros(1, 8, dtype=torch.long)).logits).all()
    # resuming ignores (and cleans) the half-written folder and finishes the run like an uninterrupted one
    resumed = train(_cfg(out, resume=True))
    straight = train(_cfg(tmp_path / "straight"))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    assert not [n for n in os.listdir(root) if n.startswith(".tmp-")]
    assert [s for s, _ in list_checkpoints(root)] == [2, 4]
