"""Argument parsing shared by the sub-commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def parse_key_value(text: str, flag: str = "--set") -> tuple[str, Any]:
    """'model.d_model=64' -> ('model.d_model', 64).

    The value is read as YAML (numbers, bools, lists, JSON); a number written without a dot such as 3e-4,
    which YAML leaves a string, becomes a float. An empty value is None.
    """
    import yaml

    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"{flag} expects KEY=VALUE (e.g. {flag} seed=1), got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"{flag} expects KEY=VALUE, got an empty key in {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and key.split(".")[-1] != "task":
        try:
            return key, float(value)
        except ValueError:
            return key, value
    return key, value


def parse_device(text: str, flag: str = "--device") -> str:
    """'cpu', 'cuda' or 'cuda:N', checked against what this machine has (a clear error, not torch's)."""
    import torch

    kind, _, index = str(text).partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise ValueError(f"{flag} must be cpu, cuda or cuda:N, got {text!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {text}: no CUDA GPU is visible to torch here (torch.cuda.is_available() "
                             "is False); use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"{flag} {text}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return text


def device_arg(text: str) -> str:
    """argparse `type=` for a --device flag: parse_device, reported as an argument error."""
    import argparse

    try:
        return parse_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def threads_arg(text: str) -> int | str:
    """argparse `type=` for --threads: an int >= 1 or 'auto' (sessa.train.threads.apply_threads)."""
    import argparse

    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads must be an int >= 1 or 'auto', got {text!r}")
    return n


THREADS_HELP = ("torch CPU threads (default auto: the cores not busy with other work; OMP_NUM_THREADS, if set, "
                "is kept; a CUDA run keeps torch's setting)")


def run_with_threads(args: Any, body: Callable[[Any], int]) -> int:
    """body(args) with args.threads applied to torch (see THREADS_HELP); the previous count is restored after,
    so in-process callers get their setting back."""
    import sys

    import torch

    from sessa.train.threads import apply_threads

    before = apply_threads(args.threads, cuda=args.device.startswith("cuda"), say=lambda m: print(m, file=sys.stderr))
    try:
        return body(args)
    finally:
        if before is not None:
            torch.set_num_threads(before)


def parse_key_values(items: list[str], flag: str = "--set", prefix: str = "") -> dict[str, Any]:
    """Several KEY=VALUE items -> {prefix + KEY: VALUE}; a later item wins."""
    out: dict[str, Any] = {}
    for item in items:
        k, v = parse_key_value(item, flag)
        out[prefix + k] = v
    return out
