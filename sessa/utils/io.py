"""Atomic file output: write to a temp file (or folder) next to the target, fsync, then os.replace.

A reader therefore sees either the previous complete file or the new complete file, never a half-written
one, even if the writer is SIGKILLed. Temp names start with ".tmp-" so they are easy to clean up.

Also the bounded readers of config files (JSON, YAML): size, nesting depth and expanded size are checked
before or while parsing, so a hostile or corrupt file gives a ValueError naming it, never a RecursionError
or gigabytes of memory.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
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


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike) -> Iterator[str]:
    """`with atomic_files(folder) as tmp:` fill the temp sub-folder `tmp`; on success each of its files is
    moved into `folder` with os.replace, so every file appears complete or not at all (files of `folder`
    that are not rewritten stay). For writers such as transformers' save_pretrained that fill a folder
    shared with other files (a tokenizer); atomic_dir is for a folder written as a whole."""
    folder = os.fspath(folder)
    if os.path.isfile(folder):
        raise ValueError(f"{folder!r} is a file, not a folder")
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX + "files-", dir=folder)
    try:
        yield tmp
        for name in sorted(os.listdir(tmp)):
            fp = os.path.join(tmp, name)
            if os.path.isfile(fp):
                with open(fp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(fp, os.path.join(folder, name))
        _fsync_dir(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


# ---------------------------------------------------------------- bounded reading of config files

MAX_CONFIG_BYTES = 1 << 20  # YAML configs, config.json: a real one is a few KiB
MAX_STATE_BYTES = 64 << 20  # state.json holds the whole loss history (~150 bytes per logged row)
MAX_DEPTH = 64  # our deepest file (state.json) nests 5 levels
MAX_NODES = 100_000  # values in a parsed YAML file, counting every alias expansion (alias bombs)

# a JSON string literal (unrolled loop: linear time, no backtracking blow-up)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def read_text_bounded(path: str | os.PathLike, max_bytes: int, what: str = "file") -> str:
    """The UTF-8 text of `path`, refused (ValueError naming the file) above max_bytes or if not UTF-8 text."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist (or is not a regular file)")
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)  # never more, whatever the file claims
    if len(raw) > max_bytes:
        raise ValueError(f"{path}: {what} larger than the {max_bytes:,} bytes allowed (corrupt or not a {what}?)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if "\x00" in text:
        raise ValueError(f"{path}: {what} holds NUL characters (binary or UTF-16, not UTF-8 text)")
    return text


def check_json_depth(text: str, max_depth: int, where: str) -> None:
    """Refuse JSON text whose arrays/objects nest deeper than max_depth, before the recursive parser sees it."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = 0
    for ch in brackets:
        depth += 1 if ch in "[{" else -1
        if depth > max_depth:
            raise ValueError(f"{where}: nested deeper than {max_depth} levels (not a file sessa writes)")


def check_tree(obj: Any, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES, where: str = "data") -> None:
    """Refuse parsed data nested deeper than max_depth or holding more than max_nodes values, counting a
    shared (aliased) value once per reference: a small YAML file can expand into gigabytes of JSON."""
    count = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise ValueError(f"{where}: more than {max_nodes:,} values once aliases are expanded (an alias bomb?)")
        if isinstance(node, (dict, list, tuple)):
            if depth > max_depth:
                raise ValueError(f"{where}: nested deeper than {max_depth} levels")
            children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children)


def read_json_file(path: str | os.PathLike, *, max_bytes: int = MAX_CONFIG_BYTES, max_depth: int = MAX_DEPTH,
                   what: str = "JSON file") -> Any:
    """json.load with bounds: size, nesting depth (checked before parsing) and valid UTF-8; ValueError names
    the file (a 200,000-deep file is refused, it never reaches the recursive parser)."""
    path = os.fspath(path)
    text = read_text_bounded(path, max_bytes, what)
    check_json_depth(text, max_depth, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (corrupt or truncated): {e}") from None


def _strict_yaml_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """safe_load that refuses a key given twice in one mapping (YAML keeps the last one silently)."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` then overriding a key is the point of merge keys
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"found the key {key!r} twice (first on line {seen[key].line + 1})",
                            key_node.start_mark)
                    seen[key] = key_node.start_mark
                except TypeError:
                    pass  # an unhashable key: the base class reports it
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def load_yaml_file(path: str | os.PathLike, *, max_bytes: int = MAX_CONFIG_BYTES, max_depth: int = MAX_DEPTH,
                   max_nodes: int = MAX_NODES, what: str = "YAML file") -> Any:
    """yaml.safe_load with bounds: size, depth, expanded size (alias bombs), duplicate keys; ValueError names
    the file. An empty file gives None (callers decide whether that is allowed)."""
    import yaml

    path = os.fspath(path)
    text = read_text_bounded(path, max_bytes, what)
    stream = io.StringIO(text)
    stream.name = path  # error marks name the file
    try:
        data = yaml.load(stream, Loader=_strict_yaml_loader())  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply (more than {max_depth} levels)") from None
    check_tree(data, max_depth, max_nodes, path)
    return data
