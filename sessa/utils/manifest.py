"""manifest.json: the size and sha256 of every file of a saved folder (checkpoint or exported model).

Written last, after the files it lists; a reader checks it before trusting any of them, so a flipped byte,
a truncated file or an edited state.json is refused with a message naming the file. Names listed in a
manifest are plain file names inside the folder: absolute paths, sub-paths, ".." and links that lead out
of the folder are refused before anything is opened.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

from sessa.utils.io import MAX_CONFIG_BYTES, atomic_write_json, read_json_file

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "sessa-manifest/1"


class IntegrityError(ValueError):
    """A saved folder does not match its manifest (missing, truncated or altered file, unsafe name)."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def member_path(folder: str, name: object) -> str:
    """`folder/name` for a plain file name that stays inside `folder` (links resolved); IntegrityError else."""
    if not isinstance(name, str) or not name or name in (".", "..") or "\x00" in name:
        raise IntegrityError(f"{folder}: invalid file name {name!r} in {MANIFEST_FILE}")
    if os.path.isabs(name) or "/" in name or "\\" in name or os.path.basename(name) != name:
        raise IntegrityError(f"{folder}: {MANIFEST_FILE} names {name!r}, which is not a plain file name inside "
                             f"the folder (absolute paths, sub-folders and '..' are refused)")
    path = os.path.join(folder, name)
    real_folder = os.path.realpath(folder)
    if os.path.dirname(os.path.realpath(path)) != real_folder:
        raise IntegrityError(f"{path}: a link that leads out of {folder}; refused")
    return path


def file_record(path: str) -> dict[str, Any]:
    return {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def write_manifest(folder: str | os.PathLike, names: Iterable[str]) -> dict[str, Any]:
    """Hash the named files of `folder` and write folder/manifest.json atomically; returns the manifest."""
    folder = os.fspath(folder)
    files = {n: file_record(member_path(folder, n)) for n in sorted(names) if n != MANIFEST_FILE}
    manifest = {"format": MANIFEST_FORMAT, "files": files}
    atomic_write_json(os.path.join(folder, MANIFEST_FILE), manifest)
    return manifest


def read_manifest(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The {name: {"bytes", "sha256"}} table of folder/manifest.json, checked for shape and safe names."""
    folder = os.fspath(folder)
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise IntegrityError(f"{path}: missing; the folder cannot be verified (incomplete, or written by an "
                             f"older sessa: load it with verify=False if you trust it)")
    try:
        data = read_json_file(path, max_bytes=MAX_CONFIG_BYTES, what="manifest")
    except ValueError as e:
        raise IntegrityError(str(e)) from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"),
                                                                                             dict):
        raise IntegrityError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    for name, rec in data["files"].items():
        member_path(folder, name)
        ok = (isinstance(rec, dict) and isinstance(rec.get("bytes"), int) and not isinstance(rec["bytes"], bool)
              and isinstance(rec.get("sha256"), str) and len(rec["sha256"]) == 64)
        if not ok:
            raise IntegrityError(f"{path}: malformed entry for {name!r}: {rec!r}")
    return data["files"]


def verify_manifest(folder: str | os.PathLike, required: Iterable[str] = (),
                    names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Check `folder` against its manifest: every `required` name must be listed; the listed files (only
    those in `names`, if given) must exist with the recorded size and sha256. Raises IntegrityError."""
    folder = os.fspath(folder)
    files = read_manifest(folder)
    check_files(folder, files, required, names)
    return files


def check_files(folder: str, files: dict[str, Any], required: Iterable[str] = (), names: Iterable[str] | None = None,
                source: str = MANIFEST_FILE) -> None:
    """The check behind verify_manifest, for a {name: {"bytes", "sha256"}} table read from `source` (a
    manifest, or the state.json of a sessa 0.1 checkpoint): required names listed, listed files intact."""
    missing = [n for n in required if n not in files]
    if missing:
        raise IntegrityError(f"{os.path.join(folder, source)}: does not cover {missing}")
    wanted = None if names is None else set(names)
    for name, rec in files.items():
        if wanted is not None and name not in wanted:
            continue
        path = member_path(folder, name)
        if not isinstance(rec, dict) or not os.path.isfile(path):
            raise IntegrityError(f"{path}: file missing or badly recorded (listed in {source})")
        size = os.path.getsize(path)
        if size != rec.get("bytes"):
            raise IntegrityError(f"{path}: truncated or altered: {size} bytes, {source} records {rec.get('bytes')}")
        if sha256_file(path) != rec.get("sha256"):
            raise IntegrityError(f"{path}: contents corrupted (sha256 differs from the one in {source})")
