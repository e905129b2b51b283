"""The trainer's torch thread count: the pure rule, its application, the config field and the CLI default."""

from __future__ import annotations

import argparse

import pytest
import torch
from train_helpers import tiny_config

import sessa.train.threads as T
from sessa.commands.train import add_arguments, build_config
from sessa.train import train


@pytest.mark.parametrize(
    "env,cpus,lws,load,want",
    [
        ({}, 2, 1, 0.0, 2),  # idle laptop: every core
        ({}, 2, 1, 1.2, 1),  # another job on one core: the other one
        ({}, 2, 1, 1.6, 1),  # load rounds to 2 busy: still at least 1
        ({}, 2, 1, 7.0, 1),  # overloaded: 1, never 0 or negative
        ({}, 16, 4, 0.0, 4),  # torchrun, 4 processes on the node: a quarter each
        ({}, 16, 4, 4.4, 3),  # 4 cores busy: the 12 free ones shared by 4
        ({}, 3, 4, 0.0, 1),  # more processes than cores
        ({}, 8, 1, 2.49, 6),
    ],
)
def test_choose_threads_free_cores(env, cpus, lws, load, want):
    n, why = T.choose_threads(env=env, usable_cpus=cpus, local_world_size=lws, load=load)
    assert n == want
    assert f"{cpus} usable cores" in why


@pytest.mark.parametrize("var", T.THREAD_ENV_VARS)
def test_choose_threads_keeps_the_users_variable(var):
    n, why = T.choose_threads(env={var: "3"}, usable_cpus=8, local_world_size=1, load=0.0)
    assert n is None and f"{var}=3" in why
    n, _ = T.choose_threads(env={var: " "}, usable_cpus=8, local_world_size=1, load=0.0)  # blank: not set
    assert n == 8


def test_helpers_read_the_environment(monkeypatch):
    assert T.local_world_size({"LOCAL_WORLD_SIZE": "4"}) == 4
    assert T.local_world_size({}) == 1 and T.local_world_size({"LOCAL_WORLD_SIZE": "x"}) == 1
    monkeypatch.setattr(T.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert T.usable_cpus() == 3
    monkeypatch.delattr(T.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(T.os, "cpu_count", lambda: 6)
    assert T.usable_cpus() == 6
    monkeypatch.setattr(T.os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert T.load_average() == 1.5

    def no_load():
        raise OSError("no load average")

    monkeypatch.setattr(T.os, "getloadavg", no_load)
    assert T.load_average() == 0.0


def _fake_machine(monkeypatch, cpus: int, load: float, env: dict[str, str] | None = None) -> None:
    for var in (*T.THREAD_ENV_VARS, "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(T, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(T, "load_average", lambda: load)


def test_apply_threads_auto_sets_and_says(monkeypatch):
    _fake_machine(monkeypatch, cpus=4, load=1.0)
    lines: list[str] = []
    before = torch.get_num_threads()
    try:
        assert T.apply_threads("auto", cuda=False, say=lines.append) == before
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert len(lines) == 1 and "torch threads: 3" in lines[0] and "--threads" in lines[0]


def test_apply_threads_leaves_torch_alone(monkeypatch):
    _fake_machine(monkeypatch, cpus=4, load=0.0, env={"OMP_NUM_THREADS": "1"})
    lines: list[str] = []
    torch.set_num_threads(1)
    assert T.apply_threads("auto", cuda=False, say=lines.append) is None  # the user's variable
    assert "OMP_NUM_THREADS=1" in lines[0] and torch.get_num_threads() == 1
    lines.clear()
    assert T.apply_threads("auto", cuda=True, say=lines.append) is None  # CUDA: as before, silently
    assert T.apply_threads(None, cuda=False, say=lines.append) is None  # None: keep, silently
    assert not lines and torch.get_num_threads() == 1
    assert T.apply_threads(2, cuda=True, say=lines.append) == 1  # an explicit count always applies
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)


@pytest.mark.parametrize("value,exc", [(0, ValueError), (-2, ValueError), (True, TypeError), (1.5, TypeError),
                                       ("many", TypeError), ("4", TypeError)])
def test_config_rejects_bad_threads(value, exc):
    with pytest.raises(exc, match="threads"):
        tiny_config(threads=value)


def test_config_accepts_threads():
    assert tiny_config().threads is None  # the Python API leaves torch's setting alone by default
    assert tiny_config(threads="auto").threads == "auto" and tiny_config(threads=2).threads == 2


def _cli(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_cli_default_is_auto_and_flag_overrides(tmp_path):
    assert build_config(_cli("--task", "mqar")).threads == "auto"
    assert build_config(_cli("--task", "mqar", "--threads", "3")).threads == 3
    assert build_config(_cli("--task", "mqar", "--set", "threads=null")).threads is None
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: mqar\nthreads: 2\n")
    assert build_config(_cli("--config", str(cfg))).threads == 2  # the file's choice is kept
    with pytest.raises(SystemExit):
        _cli("--threads", "0")


def test_train_applies_and_restores_threads(monkeypatch, capsys):
    _fake_machine(monkeypatch, cpus=3, load=0.2)
    torch.set_num_threads(1)
    train(tiny_config(threads="auto", steps=2, warmup_steps=1))
    assert torch.get_num_threads() == 1  # restored: no global state kept between calls
    assert "torch threads: 3 (3 usable cores, 0 busy" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["generate", "eval"])
def test_inference_commands_pick_threads_and_restore(monkeypatch, capsys, tmp_path, command):
    from sessa.cli import main

    _fake_machine(monkeypatch, cpus=3, load=0.2)
    torch.set_num_threads(1)
    if command == "generate":
        argv = ["generate", "--random-init", "--prompt", "ab", "--max-new-tokens", "2"]
    else:
        out = tmp_path / "run"
        cfg = tiny_config(steps=2, warmup_steps=1, out_dir=str(out))
        train(cfg)
        capsys.readouterr()
        argv = ["eval", "--checkpoint", str(out), "--task", cfg.task, "--batches", "1", "--batch-size", "2"]
    assert main(argv) == 0
    assert torch.get_num_threads() == 1  # restored after the command
    assert "torch threads: 3 (3 usable cores, 0 busy" in capsys.readouterr().err
    assert main([*argv, "--threads", "1"]) == 0 and "torch threads" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--threads", "0"])
    assert "--threads must be an int >= 1 or 'auto'" in capsys.readouterr().err
