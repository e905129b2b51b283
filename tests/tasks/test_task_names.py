"""Task names: built-in names everywhere, "package.module:factory" only from a trusted source.

A file (a checkpoint's config.json, a YAML config) must never make sessa import and run code.
"""

import json
import os
import sys

import pytest
import yaml

from sessa.cli import main
from sessa.tasks import UntrustedTaskError, available_tasks, build_task, check_task_name
from sessa.train.config import TrainConfig, load_yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN_TESTS = os.path.join(os.path.dirname(HERE), "train")
SYNTH = "synthtask:build_synth_task"


@pytest.fixture(autouse=True)
def _factories_importable(monkeypatch):
    monkeypatch.syspath_prepend(TRAIN_TESTS)
    monkeypatch.syspath_prepend(HERE)


def test_builtin_names_resolve_without_trust():
    assert "symbolsoup" in available_tasks()
    assert check_task_name("mqar", allow_import=False) == "mqar"
    assert build_task("mqar", n_train=4, n_validation=2, n_test=2).vocab_size > 0


def test_code_reference_needs_trust():
    with pytest.raises(UntrustedTaskError, match="names Python code"):
        build_task(SYNTH, n_train=8)
    assert build_task(SYNTH, allow_import=True, n_train=8, n_val=4).vocab_size == 16


@pytest.mark.parametrize("name", ["", "nope", "os:", ":system", "a b:c", "x:y:z", "../evil:f"])
def test_malformed_names_are_refused(name):
    with pytest.raises((ValueError, TypeError)):
        check_task_name(name, allow_import=True)


def test_factory_must_exist_and_be_callable():
    with pytest.raises(ValueError, match="cannot import"):
        build_task("sessa_no_such_module:f", allow_import=True)
    with pytest.raises(TypeError, match="not callable"):
        build_task("sys:version", allow_import=True)


def _hostile_checkpoint(tmp_path, marker):
    """A real checkpoint folder whose config.json names subprocess.run as its task."""
    run_dir = tmp_path / "run"
    assert main(["train", "--task", SYNTH, "--set", "task_options={n_train: 16, n_val: 8}", "--steps", "1",
                 "--batch-size", "4", "--d-model", "16", "--n-layers", "1", "--warmup-steps", "0",
                 "--out-dir", str(run_dir), "--no-progress"]) == 0
    ckpt = run_dir / "checkpoints"
    folder = next(p for p in ckpt.iterdir() if p.name.startswith("step_"))
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["train"]["task"] = "subprocess:run"
    cfg["train"]["task_options"] = {"args": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]}
    cfg_path.write_text(json.dumps(cfg))
    return folder


def _reseal(folder):
    """What a hostile author would do: a manifest that matches the edited files."""
    from sessa.train.checkpoint import CHECKPOINT_FILES
    from sessa.utils.manifest import write_manifest

    write_manifest(folder, CHECKPOINT_FILES)


def test_eval_never_runs_code_named_by_a_checkpoint(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    folder = _hostile_checkpoint(tmp_path, marker)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(folder), "--batches", "1"]) == 2  # an edited file is refused...
    assert "config.json: truncated or altered" in capsys.readouterr().err
    _reseal(folder)
    assert main(["eval", "--checkpoint", str(folder), "--batches", "1"]) == 2  # ...and a sealed one names no code
    err = capsys.readouterr().err
    assert "names Python code" in err and "config.json" in err
    assert not marker.exists()


def test_yaml_config_naming_code_needs_the_flag(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"task": "subprocess:run",
                                    "task_options": {"args": ["touch", str(marker)]}, "steps": 1}))
    with pytest.raises(UntrustedTaskError, match="--allow-task-import"):
        load_yaml(path)
    with pytest.raises(UntrustedTaskError):
        TrainConfig.from_yaml(path)
    assert main(["train", "--config", str(path), "--steps", "1"]) == 2
    assert "names Python code" in capsys.readouterr().err
    assert not marker.exists()
    # trusted explicitly: the file may name a factory (the synthetic task here)
    path.write_text(yaml.safe_dump({"task": SYNTH, "task_options": {"n_train": 8}}))
    assert TrainConfig.from_yaml(path, allow_task_import=True).task == SYNTH


def test_every_command_accepts_a_factory_named_on_the_command_line(tmp_path, capsys):
    """The documented recipe: `sessa train --task mod:factory`, `sessa eval --task ...`, `sessa bench mod:factory`."""
    run_dir = tmp_path / "run"
    assert main(["train", "--task", SYNTH, "--task-option", "n_train=16", "--task-option", "n_val=8",
                 "--steps", "1", "--batch-size", "4", "--d-model", "16", "--n-layers", "1",
                 "--warmup-steps", "0", "--out-dir", str(run_dir), "--no-progress"]) == 0
    assert main(["eval", "--checkpoint", str(run_dir), "--task", SYNTH, "--batches", "1", "--json"]) == 0
    preset = {"model": {"d_model": 16, "n_layers": 1, "n_heads": 1, "impl": "naive"},
              "budget": {"steps": 2, "batch_size": 4, "lr": 1e-2, "warmup_steps": 0, "eval_batches": 1,
                         "eval_batch_size": 8}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(preset))
    capsys.readouterr()
    assert main(["bench", "mytasks:build", "--preset", str(tmp_path / "p.yaml"), "--models", "sessa,attention",
                 "--task-option", "num_pairs=3", "--jobs", "1", "--tolerance", "0.5",
                 "--out", str(tmp_path / "bench")]) == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert results["task"] == "mytasks:build" and set(results["models"]) == {"sessa", "attention"}
    assert results["task_options"]["num_pairs"] == 3
