"""SIGKILL a training process while it writes a checkpoint: the previous checkpoint stays intact and loadable,
and resuming from it continues the run (the kill is timed by the test-side hook in killhook/)."""

import os
import signal

import torch
from kill_helpers import finish, kill_config, sigkill, start, wait_for, write_config

from sessa.train import load_checkpoint, train
from sessa.train.checkpoint import latest_checkpoint, list_checkpoints


def _cfg(out_dir, **kw):
    return kill_config(steps=4, ckpt_every=2, eval_every=0, log_every=1, out_dir=str(out_dir), **kw)


def test_sigkill_mid_save_keeps_previous_checkpoint(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "writing"
    config = write_config(tmp_path / "cfg.yaml", _cfg(out))
    # the step-4 save pauses once all its files are written, before its temp folder is renamed
    proc = start(config, out, hook={"pause_at": ["fsync", ".tmp-step_00000004"], "marker": str(marker)})
    if not wait_for(marker, proc):
        raise AssertionError(f"the writer never reached the step-4 save: {finish(proc)[2][-3000:]}")
    sigkill(proc)
    assert proc.returncode == -signal.SIGKILL
    root = str(out / "checkpoints")
    leftovers = [n for n in os.listdir(root) if n.startswith(".tmp-")]
    assert leftovers, "the killed save should have left its temp folder (never visible as a checkpoint)"
    assert [s for s, _ in list_checkpoints(root)] == [2]
    assert latest_checkpoint(root).endswith("step_00000002")
    model = load_checkpoint(out)  # verified against the manifest's sha256 of every file
    assert torch.isfinite(model(torch.zeros(1, 8, dtype=torch.long)).logits).all()
    # resuming ignores (and cleans) the half-written folder and finishes the run like an uninterrupted one
    resumed = train(_cfg(out, resume=True))
    straight = train(_cfg(tmp_path / "straight"))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    assert not [n for n in os.listdir(root) if n.startswith(".tmp-")]
    assert [s for s, _ in list_checkpoints(root)] == [2, 4]
