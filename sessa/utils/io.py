"""Atomic file output: write to a temp file (or folder) next to the target, fsync, then os.replace.

A reader therefore sees either the previous complete file or the new complete file, never a half-written
one, even if the writer is SIGKILLed. Temp names start with ".tmp-" so they are easy to clean up.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: str) -> None:
    """Persist a rename: fsync the folder entry (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """`with atomic_write(path) as f: f.write(...)` -> path is replaced only if the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix="-" + os.path.basename(path), dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline="")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically replace `path` with `data`."""
    with atomic_write(path, "wb", encoding=None) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically replace `path` with UTF-8 `text`."""
    with atomic_write(path, "w") as f:
        f.write(text)


def json_safe(obj: Any) -> Any:
    """A copy of `obj` with every NaN/Inf float replaced by None: JSON has no such numbers (they mean
    "undefined" or "diverged" in our results, e.g. a standard error of one sample)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Atomically write `obj` as JSON (NaN/Inf are refused: they are not valid JSON)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, replace: bool = False) -> Iterator[str]:
    """`with atomic_dir(final) as tmp:` fill the temp folder `tmp`; it is renamed to `final` on success.

    An existing `final` is an error unless replace=True: then, once the new folder is complete, the old one
    is renamed aside (".tmp-*") and deleted after the new one is in place. On any error the temp folder is
    removed; if the process is killed it stays behind as ".tmp-*" and is ignored.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not replace:
        raise FileExistsError(f"{path} already exists; pass replace=True to replace it")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX + os.path.basename(path) + "-", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        for name in os.listdir(tmp):  # make the contents durable before they become visible
            fp = os.path.join(tmp, name)
            if os.path.isfile(fp):
                with open(fp, "rb") as f:
                    os.fsync(f.fileno())
        _fsync_dir(tmp)
        old = None
        if os.path.exists(path):  # replace=True: a folder rename cannot overwrite a non-empty folder
            old = tempfile.mkdtemp(prefix=TMP_PREFIX + "old-", dir=parent)
            os.rename(path, os.path.join(old, "d"))
        os.rename(tmp, path)
        _fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temps(folder: str | os.PathLike) -> list[str]:
    """Delete ".tmp-*" leftovers of killed writers in `folder`; returns the removed paths."""
    folder = os.fspath(folder)
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if name.startswith(TMP_PREFIX):
            p = os.path.join(folder, name)
            if os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
            removed.append(p)
    return removed
