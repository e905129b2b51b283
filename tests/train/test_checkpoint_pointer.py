"""A run's checkpoints/latest pointer file is accepted wherever a checkpoint is (tails, eval, generate)."""

import pytest
from train_helpers import tiny_config

from sessa.train import CheckpointError, load_checkpoint, train
from sessa.train.checkpoint import LATEST, resolve_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, train(tiny_config(steps=3, out_dir=str(out)))


def test_latest_pointer_resolves_to_the_folder_it_names(run):
    out, result = run
    pointer = out / "checkpoints" / LATEST
    assert pointer.is_file()
    assert resolve_checkpoint(str(pointer)) == result["checkpoint"]
    assert not load_checkpoint(pointer).training  # os.PathLike too


def test_a_pointer_to_nothing_is_named(tmp_path):
    bad = tmp_path / "checkpoints"
    bad.mkdir()
    (bad / LATEST).write_text("step_00000099\n")
    with pytest.raises(CheckpointError, match="latest: names no complete checkpoint"):
        resolve_checkpoint(str(bad / LATEST))
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        resolve_checkpoint(str(other))
