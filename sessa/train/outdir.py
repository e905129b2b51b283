"""One writer per output folder: the folder is checked, locked and cleaned before training starts.

`<out_dir>/train.lock` names the pid and host of the run that writes the folder; the file is also held
with an exclusive flock for the run's duration (released by the kernel if the process dies), so a second
run into the same folder is refused, and a lock left by a killed run on this host is taken over with a
warning. Temp files and folders (".tmp-*") of killed saves are removed once the lock is held.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from typing import Any

from sessa.utils.io import TMP_PREFIX, remove_stale_temps

LOCK_FILE = "train.lock"

try:
    import fcntl
except ImportError:  # Windows: the pid check alone decides whether a lock is stale
    fcntl = None


class OutDirError(ValueError):
    """The output folder cannot be used: not a writable folder, locked by another run, or it holds a run's
    checkpoints and resuming was not asked for."""


def check_writable_folder(path: str) -> str:
    """Create `path` if needed and prove it is a folder we can write to (a probe file); OutDirError if not."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutDirError(f"out_dir {path!r} is a file, not a folder; choose a folder (it is created if needed)")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX + "probe-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise OutDirError(f"out_dir {path!r} is not a writable folder ({e.strerror or e}); choose another "
                          f"--out-dir") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's process) or cannot tell: assume alive
    return True


class OutDirLock:
    """Exclusive lock on one output folder; `acquire()` raises OutDirError when another live run holds it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self.host = socket.gethostname()
        self._fd: int | None = None

    def _read_holder(self, fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        try:
            holder = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _describe(self, holder: dict[str, Any]) -> str:
        since = holder.get("started")
        when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, float) else ""
        return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{when}"

    def acquire(self) -> str | None:
        """Take the lock; returns a warning text when a stale lock was taken over (None otherwise)."""
        for _ in range(10):  # retry if the file is replaced between open and flock (a release in between)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutDirError(f"out_dir {self.folder!r}: cannot open the lock file {self.path} "
                                  f"({e.strerror or e}); choose another --out-dir") from None
            try:
                flocked = self._flock(fd)
                try:
                    replaced = os.stat(self.path).st_ino != os.fstat(fd).st_ino
                except FileNotFoundError:
                    replaced = True
                if replaced:  # released (unlinked) by its holder between our open and flock: lock the new file
                    os.close(fd)
                    continue
                holder = self._read_holder(fd)
                pid, host = holder.get("pid"), holder.get("host")
                other = isinstance(pid, int) and (pid, host) != (os.getpid(), self.host)
                if not flocked or (other and (host != self.host or (fcntl is None and _pid_alive(pid)))):
                    # a live run holds it, or one on another host whose liveness we cannot check
                    raise OutDirError(
                        f"out_dir {self.folder!r} is in use by another training run ({self._describe(holder)}; "
                        f"lock file {self.path}). Wait for it to finish, or choose another --out-dir"
                        + (". If that run is gone, delete the lock file" if flocked else ""))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            self._fd = fd
            record = {"pid": os.getpid(), "host": self.host, "started": time.time()}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
            if other:
                return (f"out_dir {self.folder!r}: taking over the lock left by {self._describe(holder)}, "
                        f"which is no longer running")
            return None
        raise OutDirError(f"out_dir {self.folder!r}: could not take the lock {self.path} (it keeps changing)")

    def _flock(self, fd: int) -> bool:
        """True when we hold the exclusive flock (or flock is unavailable here); False when another has it."""
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:  # a file system without flock: fall back to the pid check
            return True
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # while still holding the flock: nobody can have taken it
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None


def prepare_out_dir(out_dir: str, resume: bool | str) -> tuple[OutDirLock, list[str]]:
    """Check, lock and clean `out_dir` before anything is built (rank 0 only).

    Returns the held lock and messages to show (stale lock taken over, leftovers removed). Refuses a fresh
    run (resume False) into a folder that already holds checkpoints: that would overwrite another run.
    """
    from sessa.train.checkpoint import list_checkpoints

    folder = check_writable_folder(out_dir)
    ckpt_root = os.path.join(folder, "checkpoints")
    lock = OutDirLock(folder)
    notes = []
    warning = lock.acquire()
    try:
        if warning:
            notes.append(warning)
        check_writable_folder(ckpt_root)
        removed = remove_stale_temps(folder) + remove_stale_temps(ckpt_root)
        if removed:
            notes.append(f"removed {len(removed)} leftover(s) of an interrupted save: "
                         + ", ".join(os.path.basename(p) for p in removed))
        found = list_checkpoints(ckpt_root)
        if resume is False and found:
            raise OutDirError(
                f"out_dir {folder!r} already holds checkpoints of a run (newest: step {found[-1][0]}); pass "
                f"--resume auto (resume=\"auto\") to continue it, or choose another --out-dir (nothing is "
                f"overwritten silently)")
    except BaseException:
        lock.release()
        raise
    return lock, notes
