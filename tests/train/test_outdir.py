"""One writer per output folder: lock file, stale lock take-over, leftovers cleaned, path checked first,
no silent overwrite of another run's checkpoints."""

import json
import os
import socket
import subprocess
import sys

import pytest
from train_helpers import tiny_config

from sessa.train import OutDirError, train
from sessa.train import loop as loop_mod
from sessa.train.outdir import LOCK_FILE, OutDirLock, check_writable_folder


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # exited and reaped: no process has this pid (for the moment)


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    held = OutDirLock(str(tmp_path))
    assert held.acquire() is None
    record = json.loads((tmp_path / LOCK_FILE).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    try:
        with pytest.raises(OutDirError, match=rf"in use by another training run \(pid {os.getpid()} on host "):
            train(tiny_config(steps=2, out_dir=str(tmp_path)))
    finally:
        held.release()
    assert not (tmp_path / LOCK_FILE).exists()
    train(tiny_config(steps=2, out_dir=str(tmp_path)))  # free again


def test_a_lock_held_by_another_process_is_refused(tmp_path):
    code = ("import sys, time; from sessa.train.outdir import OutDirLock; OutDirLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(OutDirError, match=f"pid {child.pid} on host"):
            OutDirLock(str(tmp_path)).acquire()
    finally:
        child.kill()
        child.wait()
    # the holder was killed: the kernel dropped its flock, the file still names it -> taken over
    lock = OutDirLock(str(tmp_path))
    warning = lock.acquire()
    assert f"taking over the lock left by pid {child.pid}" in warning and "no longer running" in warning
    lock.release()


def test_stale_lock_of_this_host_is_taken_over_with_a_warning(tmp_path, capsys):
    pid = _dead_pid()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 1.0}))
    train(tiny_config(steps=2, out_dir=str(tmp_path)))
    err = capsys.readouterr().err
    assert f"warning: out_dir {str(tmp_path)!r}: taking over the lock left by pid {pid}" in err
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_of_another_host_is_not_taken_silently(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid"}))
    with pytest.raises(OutDirError, match="pid 1 on host elsewhere.invalid.*If that run is gone, delete the lock"):
        train(tiny_config(steps=2, out_dir=str(tmp_path)))


def test_leftovers_of_killed_saves_are_removed_at_start(tmp_path, capsys):
    (tmp_path / "checkpoints" / ".tmp-step_00000004-abc").mkdir(parents=True)
    (tmp_path / "checkpoints" / ".tmp-step_00000004-abc" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".tmp-x1y2-train_log.csv").write_text("step,loss\n")
    (tmp_path / "checkpoints" / ".tmp-q-latest").write_text("step_")
    train(tiny_config(steps=2, out_dir=str(tmp_path)))
    assert "removed 3 leftover(s) of an interrupted save" in capsys.readouterr().err
    for folder in (tmp_path, tmp_path / "checkpoints"):
        assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]


def test_output_path_is_checked_before_the_model_is_built(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(loop_mod, "SessaLM", lambda *a, **k: built.append(1))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutDirError, match="is a file, not a folder"):
        train(tiny_config(steps=2, out_dir=str(tmp_path / "file")))
    with pytest.raises(OutDirError, match="is not a writable folder"):
        train(tiny_config(steps=2, out_dir=str(tmp_path / "file" / "sub")))
    assert built == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutDirError, match="is not a writable folder"):
            train(tiny_config(steps=2, out_dir=str(ro)))
    finally:
        ro.chmod(0o755)


def test_unwritable_folder_message(tmp_path, monkeypatch):
    """The refusal path for a read-only folder, also where the tests run as root (the probe fails)."""
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutDirError, match=r"is not a writable folder \(Permission denied\)"):
        check_writable_folder(str(tmp_path))


def test_fresh_run_into_a_folder_with_checkpoints_is_refused(tmp_path):
    first = train(tiny_config(steps=4, stop_at=2, out_dir=str(tmp_path)))
    before = (tmp_path / "checkpoints" / "step_00000002" / "model.safetensors").read_bytes()
    with pytest.raises(OutDirError, match=r"already holds checkpoints .*newest: step 2.*--resume auto.*another "
                                          r"--out-dir"):
        train(tiny_config(steps=4, out_dir=str(tmp_path)))
    assert (tmp_path / "checkpoints" / "step_00000002" / "model.safetensors").read_bytes() == before
    resumed = train(tiny_config(steps=4, out_dir=str(tmp_path), resume="auto"))
    assert [h["loss"] for h in resumed["history"]][:2] == [h["loss"] for h in first["history"]]
