"""Finished bench runs on disk: one JSON file per (model, seed), so an interrupted study resumes where it stopped.

    <out>/runs/<model>-seed<seed>.json = {"settings": ..., "fingerprint": sha256 of settings, "run": ...}

A run is reused only when its settings (task, task options, budget, model config, seed) are identical to
the ones asked for; a file with other settings is an error that names what differs, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from sessa.utils.io import atomic_write_json, json_safe, read_json_file

# a run file holds the loss history and binned scores of one run: far below this
MAX_RUN_BYTES = 64 * 1024 * 1024


# budget fields that cannot change a bench run's result (bench runs write no checkpoints; threads and data
# workers change speed only), left out so that a run stays reusable when such a default changes
BOOKKEEPING = frozenset({"ckpt_every", "keep_last", "num_workers", "threads", "log_every"})


def run_settings(task: str, task_options: dict[str, Any], budget: dict[str, Any], model: dict[str, Any],
                 seed: int) -> dict[str, Any]:
    """Everything that determines a run's result (as JSON-able data)."""
    budget = {k: v for k, v in budget.items() if k not in BOOKKEEPING}
    return json_safe({"task": task, "task_options": task_options, "budget": budget, "model": model, "seed": seed})


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def run_path(out_dir: str | os.PathLike, model: str, seed: int) -> str:
    return os.path.join(os.fspath(out_dir), "runs", f"{model}-seed{seed}.json")


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _differences(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k} ({a.get(k)!r} there, {b.get(k)!r} now)")
    return out


def load_run(out_dir: str | os.PathLike, model: str, seed: int, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The finished run with exactly these settings, None when there is none; ValueError when the file
    holds a run with other settings (so a changed study never mixes with, or overwrites, an older one)."""
    path = run_path(out_dir, model, seed)
    if not os.path.exists(path):
        return None
    data = read_json_file(path, max_bytes=MAX_RUN_BYTES)
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or "run" not in data:
        raise ValueError(f"{path} is not a sessa bench run file; move it away or use another --out folder")
    stored = data["settings"]
    if isinstance(stored.get("budget"), dict):  # files written before a bookkeeping field was left out
        stored = {**stored, "budget": {k: v for k, v in stored["budget"].items() if k not in BOOKKEEPING}}
    if fingerprint(stored) != fingerprint(settings):
        diff = _differences(stored, settings)[:4]
        raise ValueError(f"{path} holds a {model} run with other settings: {'; '.join(diff) or 'unreadable'}. "
                         "Use another --out folder to run the changed study (the finished runs stay as they are)")
    return data["run"]


def save_run(out_dir: str | os.PathLike, model: str, seed: int, settings: dict[str, Any], run: dict[str, Any]) -> str:
    """Write one finished run (temp file + rename); returns its path."""
    path = run_path(out_dir, model, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json(path, {"settings": settings, "fingerprint": fingerprint(settings), "run": json_safe(run)},
                      indent=None)
    return path
