"""Checkpoint files: safetensors + JSON, load_checkpoint gives the trained model, bad files fail clearly."""

import json
import os

import pytest
import torch
from train_helpers import tiny_config

from sessa.models import SessaConfig, SessaLM
from sessa.train import CheckpointError, load_checkpoint, save_model, train
from sessa.train.checkpoint import (
    CHECKPOINT_FILES,
    MODEL_FILE,
    OPTIM_FILE,
    STATE_FILE,
    latest_checkpoint,
    resolve_checkpoint,
)
from sessa.utils.io import atomic_dir, atomic_write, atomic_write_json
from sessa.utils.manifest import write_manifest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = train(tiny_config(steps=3, out_dir=str(out)), return_model=True)
    return out, result


def _copy(folder, tmp_path):
    import shutil

    dst = tmp_path / "ckpt"
    shutil.copytree(folder, dst)
    return dst


def test_files_are_safetensors_and_json_without_pickle(run):
    out, result = run
    folder = result["checkpoint"]
    assert sorted(os.listdir(folder)) == ["config.json", "manifest.json", MODEL_FILE, OPTIM_FILE, STATE_FILE]
    state = json.loads(open(os.path.join(folder, STATE_FILE)).read())
    assert state["step"] == 3 and state["scheduler"]["step"] == 3
    assert state["data"] == {"epoch": 0, "batch_in_epoch": 3, "examples_seen": 24}
    assert set(state["rng"][0]) >= {"python", "numpy", "torch"}
    for name in (MODEL_FILE, OPTIM_FILE):  # safetensors: 8-byte header length, then a JSON header
        raw = open(os.path.join(folder, name), "rb").read()
        assert raw[8:9] == b"{" and b"\x80\x04" not in raw[:2]  # not a pickle stream
    assert latest_checkpoint(str(out / "checkpoints")) == folder
    assert resolve_checkpoint(str(out)) == folder  # a run's out_dir resolves to its latest checkpoint


def test_load_checkpoint_gives_the_trained_logits(run):
    _, result = run
    model = load_checkpoint(result["checkpoint"])
    trained = result["model"].eval()
    ids = torch.randint(0, 16, (2, 16))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, trained(ids).logits)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied head restored as a tie, not a copy


def test_save_model_round_trip(tmp_path):
    m = SessaLM(SessaConfig(vocab_size=16, d_model=16, n_layers=1))
    save_model(m, tmp_path / "m")
    back = load_checkpoint(tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values(), strict=True))


def test_truncated_weights_are_named(run, tmp_path):
    dst = _copy(run[1]["checkpoint"], tmp_path)
    p = dst / MODEL_FILE
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE}.*truncated"):
        load_checkpoint(dst)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(dst, verify=False)  # without checksums, safetensors' own parser catches it


def test_flipped_byte_is_detected(run, tmp_path):
    dst = _copy(run[1]["checkpoint"], tmp_path)
    p = dst / OPTIM_FILE
    raw = bytearray(p.read_bytes())
    raw[-5] ^= 0xFF
    p.write_bytes(bytes(raw))
    cfg = tiny_config(steps=3, resume=str(dst))
    with pytest.raises(CheckpointError, match=f"{OPTIM_FILE}.*corrupted"):
        train(cfg)


def test_bad_state_json_and_missing_file(run, tmp_path):
    dst = _copy(run[1]["checkpoint"], tmp_path)
    (dst / STATE_FILE).write_text('{"step": 3, ')
    with pytest.raises(CheckpointError, match=f"{STATE_FILE}.*truncated or altered"):  # the manifest covers it
        train(tiny_config(steps=3, resume=str(dst)))
    write_manifest(dst, CHECKPOINT_FILES)  # a folder sealed with a broken state.json: the parser names it
    with pytest.raises(CheckpointError, match=f"{STATE_FILE}.*not valid JSON"):
        train(tiny_config(steps=3, resume=str(dst)))
    os.remove(dst / STATE_FILE)
    os.remove(dst / MODEL_FILE)
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE}.*missing"):
        load_checkpoint(dst)


def test_wrong_shape_is_named(tmp_path):
    save_model(SessaLM(SessaConfig(vocab_size=16, d_model=16, n_layers=1)), tmp_path / "a")
    atomic_write_json(tmp_path / "a" / "config.json", {"model": SessaConfig(vocab_size=16, d_model=32,
                                                                            n_layers=1).to_dict()})
    with pytest.raises(CheckpointError, match=r"config.json: contents corrupted"):  # an edit is refused...
        load_checkpoint(tmp_path / "a")
    write_manifest(tmp_path / "a", (MODEL_FILE, "config.json"))  # ...and a consistent but wrong folder named
    with pytest.raises(CheckpointError,
                       match=r"model.safetensors.*'model.embed_tokens.weight' has shape \(16, 16\).*\(16, 32\)"):
        load_checkpoint(tmp_path / "a")
    atomic_write_json(tmp_path / "a" / "config.json", {"model": SessaConfig(vocab_size=16, d_model=16,
                                                                            n_layers=2).to_dict()})
    with pytest.raises(CheckpointError, match="missing.*layers.1"):
        load_checkpoint(tmp_path / "a", verify=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")


def test_resume_into_a_different_model_is_refused(run):
    cfg = tiny_config(steps=3, model={"vocab_size": 16, "d_model": 16, "n_layers": 2}, resume=run[1]["checkpoint"])
    with pytest.raises(ValueError, match=r"config changed \(model.d_model: checkpoint 32 vs now 16"):
        train(cfg)


def test_atomic_helpers_leave_nothing_half_written(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("new, half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as d:
            open(os.path.join(d, "x"), "w").write("x")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]
    with atomic_dir(tmp_path / "d") as d:
        open(os.path.join(d, "x"), "w").write("x")
    assert (tmp_path / "d" / "x").read_text() == "x"
    with pytest.raises(FileExistsError):
        with atomic_dir(tmp_path / "d"):
            pass
    with atomic_dir(tmp_path / "d", replace=True) as d:
        open(os.path.join(d, "y"), "w").write("y")
    assert os.listdir(tmp_path / "d") == ["y"] and sorted(os.listdir(tmp_path)) == ["d", "f.txt"]
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "n.json", {"x": float("nan")})
