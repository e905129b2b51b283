"""The default checkpoint interval: one rule from `steps` for every task (no per-task copies), and a short
run with the defaults writes a checkpoint before its end."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest
from train_helpers import tiny_config

from sessa.commands.train import add_arguments, build_config
from sessa.tasks import available_tasks
from sessa.train import train
from sessa.train.checkpoint import list_checkpoints
from sessa.train.config import CKPT_EVERY_RANGE


@pytest.mark.parametrize("steps,every", [(1, 10), (6, 10), (20, 10), (99, 10), (101, 11), (300, 30), (1000, 100),
                                         (10_000, 1000), (250_000, 1000)])
def test_default_interval_is_a_tenth_of_the_run_within_bounds(steps, every):
    cfg = tiny_config(steps=steps, warmup_steps=0)
    assert cfg.ckpt_every is None and cfg.checkpoint_interval == every
    assert CKPT_EVERY_RANGE[0] <= every <= CKPT_EVERY_RANGE[1]


def test_explicit_interval_wins():
    assert tiny_config(steps=300, ckpt_every=0).checkpoint_interval == 0  # only at the end
    assert tiny_config(steps=300, ckpt_every=7).checkpoint_interval == 7
    with pytest.raises(ValueError, match="ckpt_every"):
        tiny_config(ckpt_every=-1)
    with pytest.raises(TypeError, match="ckpt_every"):
        tiny_config(ckpt_every=2.5)


@pytest.mark.parametrize("task", available_tasks())
def test_every_task_preset_checkpoints_periodically(task):
    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = build_config(p.parse_args(["--task", task, "--steps", "300", "--set", "model.vocab_size=1024"]))
    assert cfg.checkpoint_interval == 30  # the same rule whatever the task
    assert build_config(p.parse_args(["--task", task, "--ckpt-every", "0"])).checkpoint_interval == 0


def test_short_run_with_defaults_writes_an_intermediate_checkpoint(tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(steps=20, warmup_steps=2, out_dir=str(out)))
    steps = [s for s, _ in list_checkpoints(str(out / "checkpoints"))]
    assert steps == [10, 20] and result["checkpoint"].endswith("step_00000020")


def test_readme_lm_example_is_small_and_checkpoints_periodically():
    """The README's LM command (a few tens of seconds on 2 cores; run by the docs tests) parses into a small
    model with intermediate checkpoints, which its `sessa generate` line then reads."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text().replace("\\\n", " ")
    line = next(t for t in readme.splitlines() if t.startswith("sessa train --task lm "))
    argv = shlex.split(line.split("#", 1)[0])[2:]
    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = build_config(p.parse_args(argv))
    assert cfg.model.d_model <= 64 and cfg.model.n_layers <= 2 and cfg.steps <= 300 and cfg.out_dir == "runs/lm"
    assert 0 < cfg.checkpoint_interval < cfg.steps
