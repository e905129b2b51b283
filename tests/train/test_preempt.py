"""Graceful stop: SIGTERM / SIGINT finish the current step, write a checkpoint and raise TrainingStopped (the
CLI exits 128 + signal and prints the resume command); a second signal aborts; handlers are restored."""

import os
import shlex
import signal

import pytest
import synthtask
from kill_helpers import finish, kill_config, start, write_config
from train_helpers import tiny_config

from sessa.cli import main as cli_main
from sessa.train import TrainingStopped, train
from sessa.train.checkpoint import list_checkpoints
from sessa.train.outdir import LOCK_FILE


class SignalOnBatch:
    """The synthetic task, raising `signals` (one per call) in the main thread while building batch `at`."""

    def __init__(self, at: int, signals: tuple[int, ...], **options) -> None:
        self.task = synthtask.build_synth_task(**options)
        self.at, self.signals, self.calls = at, signals, 0
        self.vocab_size, self.metric_names, self.dataset = self.task.vocab_size, self.task.metric_names, \
            self.task.dataset

    def collate(self, examples):
        self.calls += 1
        if self.calls == self.at:
            for sig in self.signals:
                signal.raise_signal(sig)
        return self.task.collate(examples)


def _cfg(out_dir, **kw):
    return tiny_config(steps=8, grad_accum=1, ckpt_every=3, log_every=2, out_dir=str(out_dir), **kw)


def _opts():
    return {"n_train": 64, "n_val": 16}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_step_saves_and_resumes_exactly(tmp_path, sig):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    task = SignalOnBatch(5, (sig,), **_opts())  # one collate per step: the signal arrives while building step 5
    with pytest.raises(TrainingStopped) as info:
        train(_cfg(tmp_path / "run"), task=task)
    e = info.value
    assert (e.signum, e.step, e.exit_code) == (sig, 5, 128 + sig)
    assert e.checkpoint.endswith("step_00000005") and os.path.isdir(e.checkpoint)
    assert signal.Signals(sig).name in str(e)
    assert {s: signal.getsignal(s) for s in before} == before  # previous handlers are back
    root = str(tmp_path / "run" / "checkpoints")
    assert [s for s, _ in list_checkpoints(root)] == [3, 5]
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    # the logging window (step 5 is half-way between rows 4 and 6) was saved: resuming logs the same rows
    resumed = train(_cfg(tmp_path / "run", resume="auto"))
    straight = train(_cfg(tmp_path / "straight"))
    keys = ("step", "loss", "lr", "grad_norm")
    assert [{k: r[k] for k in keys} for r in resumed["history"]] == \
        [{k: r[k] for k in keys} for r in straight["history"]]
    assert resumed["evals"] == straight["evals"]
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert (tmp_path / "run" / "checkpoints" / "step_00000008" / name).read_bytes() == \
            (tmp_path / "straight" / "checkpoints" / "step_00000008" / name).read_bytes()


def test_a_second_signal_aborts_at_once(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    task = SignalOnBatch(2, (signal.SIGINT, signal.SIGINT), **_opts())
    with pytest.raises(KeyboardInterrupt):  # the second Ctrl-C does what Ctrl-C does: no step, no save
        train(_cfg(tmp_path / "run"), task=task)
    assert signal.getsignal(signal.SIGINT) is before
    assert list_checkpoints(str(tmp_path / "run" / "checkpoints")) == []
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # the lock is released on the way out

    class Aborted(Exception):
        pass

    def previous(signum, frame):
        raise Aborted

    old = signal.signal(signal.SIGTERM, previous)  # stands in for SIG_DFL, which would end pytest
    try:
        task = SignalOnBatch(2, (signal.SIGTERM, signal.SIGTERM), **_opts())
        with pytest.raises(Aborted):
            train(_cfg(tmp_path / "run2"), task=task)
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


def test_stop_without_out_dir_saves_nothing(tmp_path):
    task = SignalOnBatch(2, (signal.SIGTERM,), **_opts())
    with pytest.raises(TrainingStopped, match="after step 2; no checkpoint") as info:
        train(tiny_config(steps=6, grad_accum=1), task=task)
    assert info.value.checkpoint is None


def test_cli_exits_143_and_prints_the_command_that_resumes(tmp_path, capsys):
    """A real child process gets SIGTERM in the middle of step 3 (sent by the test-side hook)."""
    cfg = kill_config(steps=6, ckpt_every=0, eval_every=0, log_every=2)
    config, out = write_config(tmp_path / "cfg.yaml", cfg), tmp_path / "run"
    rc, stdout, err = finish(start(config, out, hook={"signal_at": [3, int(signal.SIGTERM)]}))
    assert rc == 128 + signal.SIGTERM, err[-3000:]
    assert "received SIGTERM: finishing the current step" in err
    assert f"stopped by SIGTERM after step 3; checkpoint {out / 'checkpoints' / 'step_00000003'}" in err
    command = shlex.split(err.split("resume with: ", 1)[1].splitlines()[0])
    assert command[:4] == ["python", "-m", "sessa", "train"] and command[-2:] == ["--resume", "auto"]
    assert command[4:-2] == ["--config", config, "--out-dir", str(out)]
    assert not (out / LOCK_FILE).exists()
    assert cli_main(command[3:] + ["--json"]) == 0  # the printed command finishes the run
    capsys.readouterr()
    assert [s for s, _ in list_checkpoints(str(out / "checkpoints"))] == [3, 6]


class _ReportSignals:
    """Wraps the synthetic task's collate: each batch also records whether its process ignores SIGTERM/SIGINT."""

    def __init__(self):
        self.task = synthtask.build_synth_task(n_train=16, n_val=8)
        self.dataset = self.task.dataset

    def collate(self, examples):
        import torch

        ignored = all(signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGTERM, signal.SIGINT))
        return {**self.task.collate(examples), "ignored": torch.tensor(ignored), "pid": torch.tensor(os.getpid())}


def test_dataloader_workers_leave_stop_signals_to_the_main_process():
    from sessa.train.data import GlobalBatches, step_batches

    probe = _ReportSignals()
    steps = list(step_batches(probe, probe.dataset("train"), GlobalBatches(16, 8, 0), 0, 2, 0, 1, 8, num_workers=1))
    batches = [b for step in steps for b in step]
    assert len(batches) == 2 and all(int(b["pid"]) != os.getpid() for b in batches)  # built in a worker
    assert all(bool(b["ignored"]) for b in batches)
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the main process is untouched
