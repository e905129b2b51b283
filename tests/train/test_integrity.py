"""Every file of a checkpoint (state.json included) and of an exported model is covered by manifest.json;
names in a manifest never leave the folder; --resume auto falls back past checkpoints that do not verify."""

import json
import os
import shutil

import pytest
import torch
from train_helpers import tiny_config

from sessa.models import SessaConfig, SessaLM
from sessa.train import CheckpointError, load_checkpoint, save_model, train
from sessa.train.checkpoint import CHECKPOINT_FILES, MODEL_FILE, OPTIM_FILE, STATE_FILE, read_json
from sessa.utils.manifest import MANIFEST_FILE, write_manifest


def _flip(path, at=-5):
    raw = bytearray(open(path, "rb").read())
    raw[at] ^= 0x01
    open(path, "wb").write(bytes(raw))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(tiny_config(steps=6, stop_at=4, ckpt_every=1, keep_last=3, grad_accum=1, out_dir=str(out)))
    return out


def _copy_run(run, tmp_path):
    dst = tmp_path / "out"
    shutil.copytree(run, dst)
    return dst


def test_manifest_lists_every_file_with_its_hash(run):
    folder = run / "checkpoints" / "step_00000004"
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert sorted(manifest["files"]) == sorted(CHECKPOINT_FILES)
    assert "files" not in json.loads((folder / STATE_FILE).read_text())  # state.json is covered, not the coverer
    for name, rec in manifest["files"].items():
        assert rec["bytes"] == os.path.getsize(folder / name) and len(rec["sha256"]) == 64


def test_edited_state_json_is_refused(run, tmp_path):
    out = _copy_run(run, tmp_path)
    folder = out / "checkpoints" / "step_00000004"
    state = (folder / STATE_FILE).read_text()
    (folder / STATE_FILE).write_text(state.replace('"step": 4,', '"step": 5,', 1))
    with pytest.raises(CheckpointError, match=f"{STATE_FILE}: contents corrupted"):
        train(tiny_config(steps=6, ckpt_every=1, grad_accum=1, out_dir=str(out / "x"), resume=str(folder)))


def test_resume_auto_falls_back_to_the_newest_checkpoint_that_verifies(run, tmp_path, capsys):
    out = _copy_run(run, tmp_path)
    _flip(out / "checkpoints" / "step_00000004" / OPTIM_FILE)
    os.remove(out / "checkpoints" / "step_00000003" / MANIFEST_FILE)
    resumed = train(tiny_config(steps=6, ckpt_every=1, keep_last=3, grad_accum=1, out_dir=str(out), resume="auto"))
    err = capsys.readouterr().err
    assert f"skipping {out / 'checkpoints' / 'step_00000004'}: " in err and "optimizer.safetensors: contents " \
        "corrupted" in err
    assert f"skipping {out / 'checkpoints' / 'step_00000003'}: " in err and "manifest.json: missing" in err
    straight = train(tiny_config(steps=6, grad_accum=1))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]


def test_resume_auto_refuses_when_nothing_verifies(run, tmp_path, capsys):
    out = _copy_run(run, tmp_path)
    for step in (2, 3, 4):
        _flip(out / "checkpoints" / f"step_0000000{step}" / MODEL_FILE)
    with pytest.raises(CheckpointError, match="none of the checkpoints verifies"):
        train(tiny_config(steps=6, ckpt_every=1, grad_accum=1, out_dir=str(out), resume="auto"))
    assert capsys.readouterr().err.count("skipping") == 3


@pytest.mark.parametrize("name", ["../../../../etc/hostname", "/etc/hostname", "sub/model.safetensors", "..", ""])
def test_manifest_names_never_leave_the_folder(tmp_path, name):
    folder = save_model(SessaLM(SessaConfig(vocab_size=16, d_model=16, n_layers=1)), tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / MANIFEST_FILE).read_text())
    manifest["files"][name] = {"bytes": 1, "sha256": "0" * 64}
    (tmp_path / "m" / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="plain file name|invalid file name"):
        load_checkpoint(folder)


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "secret"
    outside.write_text("x")
    folder = save_model(SessaLM(SessaConfig(vocab_size=16, d_model=16, n_layers=1)), tmp_path / "m")
    os.symlink(outside, tmp_path / "m" / "extra.bin")
    manifest = json.loads((tmp_path / "m" / MANIFEST_FILE).read_text())
    manifest["files"]["extra.bin"] = {"bytes": 1, "sha256": "0" * 64}
    (tmp_path / "m" / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="a link that leads out of"):
        load_checkpoint(folder)


def test_exported_model_carries_a_manifest_and_a_flipped_byte_is_refused(tmp_path):
    model = SessaLM(SessaConfig(vocab_size=16, d_model=16, n_layers=1))
    folder = save_model(model, tmp_path / "m")
    assert sorted(json.loads((tmp_path / "m" / MANIFEST_FILE).read_text())["files"]) == ["config.json", MODEL_FILE]
    back = load_checkpoint(folder)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values(),
                                                 strict=True))
    _flip(tmp_path / "m" / MODEL_FILE)
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE}: contents corrupted"):
        load_checkpoint(folder)
    os.remove(tmp_path / "m" / MANIFEST_FILE)
    with pytest.raises(CheckpointError, match="manifest.json: missing.*verify=False"):
        load_checkpoint(folder)


def test_exported_files_are_byte_identical_for_the_same_model(tmp_path):
    model = SessaLM(SessaConfig(vocab_size=16, d_model=16, n_layers=1))
    save_model(model, tmp_path / "a")
    save_model(model, tmp_path / "b")
    for name in (MODEL_FILE, "config.json", MANIFEST_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_deep_or_huge_config_json_is_a_clear_error(tmp_path):
    folder = save_model(SessaLM(SessaConfig(vocab_size=16, d_model=16, n_layers=1)), tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    write_manifest(folder, ("config.json", MODEL_FILE))  # sealed: the parser's bound is what refuses it
    with pytest.raises(CheckpointError, match="config.json: nested deeper than 64 levels"):
        load_checkpoint(folder)
    (tmp_path / "m" / "config.json").write_text('{"model": {}, "pad": "' + "x" * (1 << 20) + '"}')
    with pytest.raises(CheckpointError, match="config.json: config.json larger than the 1,048,576 bytes"):
        read_json(str(tmp_path / "m" / "config.json"))


def test_hf_save_pretrained_writes_a_manifest_that_from_pretrained_checks(tmp_path):
    pytest.importorskip("transformers")
    from sessa.models.hf import SessaForCausalLM, to_hf

    hf = to_hf(SessaLM(SessaConfig(vocab_size=16, d_model=16, n_layers=1)))
    hf.save_pretrained(tmp_path)
    listed = json.loads((tmp_path / MANIFEST_FILE).read_text())["files"]
    assert "config.json" in listed and any(n.endswith(".safetensors") for n in listed)
    (tmp_path / "generation_config.json").write_text("{}")  # not part of the model: may be edited
    SessaForCausalLM.from_pretrained(tmp_path)
    weights = next(n for n in listed if n.endswith(".safetensors"))
    _flip(tmp_path / weights)
    with pytest.raises(ValueError, match=f"{weights}: contents corrupted"):
        SessaForCausalLM.from_pretrained(tmp_path)
