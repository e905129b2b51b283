"""SIGKILL a real training process at random moments -- inside optimiser steps and inside checkpoint saves --
resume it each time with --resume auto, and compare with an uninterrupted run byte for byte.

The kill moments are drawn from the events of the uninterrupted run (recorded by the test-only hook in
killhook/sitecustomize.py): the child pauses at the chosen event, before it runs, and is killed there.
Set SESSA_KILL_SEED to replay a draw.
"""

import csv
import json
import os
import random
import time

import pytest
from kill_helpers import finish, kill_config, sigkill, start, wait_for, write_config

from sessa.train.checkpoint import MODEL_FILE, OPTIM_FILE, STATE_FILE, list_checkpoints, step_dir_name
from sessa.train.outdir import LOCK_FILE

WALL_CLOCK = ("tokens_per_s", "elapsed_s")  # the only columns that may differ (timings)


def _rows(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in csv.DictReader(f)]


def _state(out, steps):
    with open(os.path.join(out, "checkpoints", step_dir_name(steps), STATE_FILE)) as f:
        s = json.load(f)
    s["history"] = [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in s["history"]]
    s["log_window"] = {k: v for k, v in s["log_window"].items() if k not in ("time_s", "elapsed_s")}
    return s


def _choose_kills(events, rng):
    """>= 5 kill events at increasing steps: 3 inside checkpoint saves, 2 inside optimiser steps."""
    saves = [e for e in events if e[2] != "optimizer" and "checkpoints" in e[3] and e[0] is not None]
    steps = [e for e in events if e[2] == "optimizer"]
    for _ in range(1000):
        picked = rng.sample(saves, 3) + rng.sample(steps, 2)
        if len({e[0] for e in picked}) == len(picked):  # distinct steps: each one is reached after a resume
            return sorted(picked, key=lambda e: e[0])
    raise AssertionError("could not draw kill events at distinct steps")


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_byte_identical(tmp_path):
    seed = int(os.environ.get("SESSA_KILL_SEED", time.time_ns() % 2**31))
    rng = random.Random(seed)
    cfg = kill_config()
    config = write_config(tmp_path / "cfg.yaml", cfg)
    straight, killed, record = tmp_path / "straight", tmp_path / "killed", tmp_path / "events.json"

    rc, _, err = finish(start(config, straight, hook={"record": str(record)}))
    assert rc == 0, err[-3000:]
    events = json.loads(record.read_text())
    kills = _choose_kills(events, rng)

    for i, (step, ordinal, kind, path) in enumerate(kills):
        marker = tmp_path / f"paused-{i}"
        proc = start(config, killed, "--resume", "auto",
                     hook={"pause": [step, ordinal], "marker": str(marker)})
        reached = wait_for(marker, proc)
        if not reached:
            rc, _, err = finish(proc)
            raise AssertionError(f"seed {seed}: kill {i} at step {step} {kind} {path} not reached (rc {rc}): "
                                 f"{err[-3000:]}")
        sigkill(proc)
        assert proc.returncode == -9
    # and one kill at a random wall-clock moment (possibly during start-up, an eval or a save)
    proc = start(config, killed, "--resume", "auto")
    time.sleep(rng.uniform(0.0, 4.0))
    sigkill(proc)

    rc, _, err = finish(start(config, killed, "--resume", "auto"))
    assert rc == 0, f"seed {seed}: {err[-3000:]}"

    final = step_dir_name(cfg.steps)
    for name in (MODEL_FILE, OPTIM_FILE):
        a = (straight / "checkpoints" / final / name).read_bytes()
        b = (killed / "checkpoints" / final / name).read_bytes()
        assert a == b, f"seed {seed}: {name} differs after kills at {kills}"
    assert _rows(killed / "train_log.csv") == _rows(straight / "train_log.csv"), f"seed {seed}"
    assert len(_rows(straight / "train_log.csv")) == cfg.steps // cfg.log_every
    assert _rows(killed / "eval_log.csv") == _rows(straight / "eval_log.csv"), f"seed {seed}"
    sa, sb = _state(straight, cfg.steps), _state(killed, cfg.steps)
    for key in ("history", "evals", "log_window", "scheduler", "data", "rng", "optimizer"):
        assert sa[key] == sb[key], f"seed {seed}: state.json {key!r} differs"
    # nothing left behind: no temp files or folders of the killed saves, no lock
    for folder in (killed, killed / "checkpoints"):
        assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")], os.listdir(folder)
    assert not (killed / LOCK_FILE).exists()
    assert list_checkpoints(str(killed / "checkpoints"))[-1][0] == cfg.steps
