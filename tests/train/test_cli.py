"""`sessa train` / `sessa eval` / `python -m sessa train` flags and outputs (run in-process)."""

import json

import pytest
import yaml
from train_helpers import TASK, tiny_config

from sessa.cli import build_parser, main
from sessa.commands.train import build_config, strip_launcher, torchrun_command


@pytest.fixture
def yaml_cfg(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(tiny_config(steps=2, grad_accum=1).to_dict()))
    return p


def test_flags_override_yaml(yaml_cfg):
    args = build_parser().parse_args(["train", "--config", str(yaml_cfg), "--allow-task-import", "--steps", "5",
                                      "--d-model", "64", "--set", "model.gamma_max=0.99", "--task-option", "n_train=32",
                                      "--fsdp"])
    cfg = build_config(args)
    assert (cfg.steps, cfg.model.d_model, cfg.model.gamma_max, cfg.fsdp) == (5, 64, 0.99, True)
    assert cfg.task_options == {"n_train": 32, "n_val": 16} and cfg.model.n_layers == 2


def test_train_then_eval(yaml_cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(yaml_cfg), "--allow-task-import", "--out-dir", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 2 and result["checkpoint"].endswith("step_00000002")
    task = ["--task", TASK]  # the recorded task names code: only the command line may name it
    assert main(["eval", "--checkpoint", str(out), *task, "--json", "--batch-size", "8", "--batches", "1"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["loss"] == pytest.approx(result["final"]["loss"], rel=1e-6)
    assert main(["eval", "--checkpoint", str(out), *task, "--split", "validation"]) == 0
    table = capsys.readouterr().out
    assert "accuracy" in table and "loss" in table


def test_user_errors_are_one_line(yaml_cfg, tmp_path, capsys):
    assert main(["train", "--config", str(yaml_cfg), "--allow-task-import", "--set", "stpes=3"]) == 2
    assert "unknown TrainConfig keys ['stpes']" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_torchrun_launcher_command(yaml_cfg):
    argv = ["--config", str(yaml_cfg), "--launcher", "torchrun", "--nproc-per-node", "4", "--nnodes=2",
            "--rdzv-endpoint", "host:29400", "--fsdp"]
    args = build_parser().parse_args(["train", *argv])
    cmd = torchrun_command(args, argv)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    i = cmd.index("sessa")
    assert cmd[i - 1] == "-m" and cmd[i + 1:] == ["train", "--config", str(yaml_cfg), "--fsdp"]
    head = cmd[:i]
    assert head[head.index("--nproc-per-node") + 1] == "4" and head[head.index("--nnodes") + 1] == "2"
    assert head[head.index("--rdzv-endpoint") + 1] == "host:29400"
    assert strip_launcher(["--launcher=torchrun", "--steps", "3"]) == ["--steps", "3"]
