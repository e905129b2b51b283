"""Under torchrun (2 CPU ranks, gloo) a SIGTERM that reaches one rank stops every rank after the same step;
rank 0 writes the checkpoint, and resuming follows the uninterrupted single-process curve."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from kill_helpers import HOOK_DIR, kill_config, write_config
from train_helpers import subprocess_env

from sessa.train import train
from sessa.train.checkpoint import list_checkpoints
from sessa.train.outdir import LOCK_FILE

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _torchrun(config, out, *flags, hook=None):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([HOOK_DIR, env["PYTHONPATH"]])
    env["SESSA_TEST_HOOK"] = json.dumps({"no_transformers": True, "under": str(out), **(hook or {})})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           "-m", "sessa", "train", "--config", config, "--out-dir", str(out), "--json", *flags]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_sigterm_to_one_rank_stops_all_ranks_after_the_same_step(tmp_path):
    cfg = kill_config(steps=8, ckpt_every=0, eval_every=0, log_every=1)
    config, out = write_config(tmp_path / "cfg.yaml", cfg), tmp_path / "run"
    # rank 1 alone receives SIGTERM in the middle of step 3; the flag reaches rank 0 with step 4's all-reduce
    p = _torchrun(config, out, hook={"signal_at": [3, int(signal.SIGTERM)], "rank": 1})
    assert p.returncode != 0
    assert "rank 1: received SIGTERM" in p.stderr and "rank 0: received" not in p.stderr
    assert f"stopped by SIGTERM after step 4; checkpoint {out / 'checkpoints' / 'step_00000004'}" in p.stderr
    assert "resume with: torchrun --nproc-per-node 2 -m sessa train" in p.stderr
    assert [s for s, _ in list_checkpoints(str(out / "checkpoints"))] == [4]
    assert not (out / LOCK_FILE).exists()
    p = _torchrun(config, out, "--resume", "auto")
    assert p.returncode == 0, p.stderr[-3000:]
    resumed = json.loads(p.stdout[p.stdout.index("{"):])
    single = train(kill_config(steps=8, ckpt_every=0, eval_every=0, log_every=1))
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in single["history"]],
                                                                    rel=1e-5)
