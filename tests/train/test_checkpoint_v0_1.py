"""A training checkpoint written by sessa 0.1 (tests/fixtures/v0_1) still resumes exactly: weights and
optimizer state are renamed on read, and the saved TrainConfig (without newer fields) is accepted."""

import json
import os
import shutil

import pytest
from train_helpers import HERE  # noqa: F401  (puts the synthetic task of the fixture on sys.path)

from sessa.train import TrainConfig, train
from sessa.train.checkpoint import read_training_checkpoint

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "v0_1")


def test_read_training_checkpoint_renames_weights_and_optimizer_state():
    weights, optim, _ = read_training_checkpoint(os.path.join(FIXTURES, "train_checkpoint"))
    assert "model.embed_tokens.weight" in weights and "embed.weight" not in weights
    assert "model.layers.1.mixer.fb_proj.weight" in optim["state"]
    params = [name for group in optim["param_groups"] for name in group["params"]]
    assert "model.norm.weight" in params and all(p.startswith(("model.", "lm_head.")) for p in params)


def test_resume_from_a_0_1_checkpoint_continues_the_same_trajectory(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(os.path.join(FIXTURES, "train_checkpoint"), folder)
    with open(folder / "state.json") as f:
        saved = json.load(f)["train_config"]
    with open(os.path.join(FIXTURES, "train_history.json")) as f:
        uninterrupted = json.load(f)
    cfg = TrainConfig.from_dict({**saved, "out_dir": str(tmp_path / "run"), "resume": str(folder), "stop_at": None})
    out = train(cfg)
    assert out["steps"] == 3
    assert [h["loss"] for h in out["history"]] == pytest.approx(uninterrupted, rel=1e-6)
