"""Checkpoints: safetensors for every tensor (model, optimizer), JSON for config and training state.

Layout of `<out_dir>/checkpoints/step_00000100/`:
  model.safetensors      full (gathered) weights; the tied LM head is stored once (as model.embed_tokens.weight)
  optimizer.safetensors  AdamW moments and step counts, keyed "<param name>::<slot>"
  config.json            {"model": SessaConfig dict, "train": TrainConfig dict}
  state.json             step, scheduler, data position, RNG states, loss history, file sizes + sha256
A checkpoint folder is filled under a ".tmp-*" name and renamed when complete (atomic), then
`<out_dir>/checkpoints/latest` is atomically rewritten; only the last `keep_last` folders are kept.
Checkpoints written by sessa 0.1 (other weight names) load too: names are upgraded on read (sessa.models.legacy).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from typing import Any

import torch
from torch import nn

from sessa.models import SessaConfig, SessaLM
from sessa.models.legacy import upgrade_key, upgrade_keys
from sessa.utils.io import atomic_dir, atomic_write_json, atomic_write_text

FORMAT_VERSION = 1
MODEL_FILE, OPTIM_FILE, CONFIG_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "config.json", \
    "state.json"
LATEST = "latest"
_STEP_DIR = re.compile(r"^step_(\d+)$")
TIED_KEY, TIED_SOURCE = "lm_head.weight", "model.embed_tokens.weight"
# Test-only hook (used by tests/train/test_checkpoint_kill.py): "STEP:SECONDS:MARKER" pauses the writer of
# checkpoint STEP after its weights are written, so a test can SIGKILL it mid-save.
PAUSE_ENV = "SESSA_TEST_CKPT_PAUSE"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated or does not fit the model; the message names it."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(root: str) -> list[tuple[int, str]]:
    """Complete checkpoints under `root` as sorted (step, folder); temp folders of killed writers are ignored."""
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = _STEP_DIR.match(name)
        if m and os.path.isfile(os.path.join(root, name, STATE_FILE)):
            found.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(found)


def latest_checkpoint(root: str) -> str | None:
    """The folder named by `root/latest`, else the highest complete step folder, else None."""
    pointer = os.path.join(root, LATEST)
    if os.path.isfile(pointer):
        with open(pointer, encoding="utf-8") as f:
            name = f.read().strip()
        path = os.path.join(root, name)
        if _STEP_DIR.match(name) and os.path.isfile(os.path.join(path, STATE_FILE)):
            return path
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | os.PathLike) -> str:
    """Accept a checkpoint folder, a run's out_dir, or its checkpoints/ folder; return the checkpoint folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if any(os.path.isfile(os.path.join(path, n)) for n in (MODEL_FILE, STATE_FILE, CONFIG_FILE)):
        return path
    for root in (os.path.join(path, "checkpoints"), path):
        found = latest_checkpoint(root)
        if found:
            return found
    raise CheckpointError(f"{path}: no checkpoint found (expected {MODEL_FILE} or a checkpoints/step_* folder)")


# ---------------------------------------------------------------- tensors <-> files

def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _save_tensors(tensors: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, path,
              metadata={"format": "pt", "sessa_format": str(FORMAT_VERSION)})


def _load_tensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file missing; the checkpoint folder is incomplete")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for bad headers/short files
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated): {e}") from None


def read_json(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file missing; the checkpoint folder is incomplete")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON (corrupt or truncated): {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def verify_files(folder: str, names: tuple[str, ...] | None = None) -> None:
    """Check sizes and sha256 of the files against those recorded in state.json (if it exists)."""
    state_path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(state_path):
        return
    files = read_json(state_path).get("files", {})
    for name, rec in files.items():
        if names is not None and name not in names:
            continue
        p = os.path.join(folder, name)
        if not os.path.isfile(p):
            raise CheckpointError(f"{p}: file missing (listed in {STATE_FILE})")
        size = os.path.getsize(p)
        if size != rec["bytes"]:
            raise CheckpointError(f"{p}: truncated or altered: {size} bytes, {STATE_FILE} records {rec['bytes']}")
        if _sha256(p) != rec["sha256"]:
            raise CheckpointError(f"{p}: contents corrupted (sha256 differs from the one in {STATE_FILE})")


# ---------------------------------------------------------------- model weights

def model_config(folder: str) -> SessaConfig:
    """The SessaConfig stored in config.json."""
    path = os.path.join(folder, CONFIG_FILE)
    data = read_json(path)
    try:
        return SessaConfig.from_dict(data["model"] if "model" in data else data)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config: {e}") from None


def check_weights(model: nn.Module, tensors: dict[str, torch.Tensor], path: str) -> dict[str, torch.Tensor]:
    """Match stored tensors to the model's state_dict: same names, shapes; returns a full dict (tied head)."""
    expected = model.state_dict()
    tied = getattr(getattr(model, "config", None), "tie_embeddings", False)
    full = dict(tensors)
    if tied and TIED_KEY not in full and TIED_SOURCE in full:
        full[TIED_KEY] = full[TIED_SOURCE]
    missing = sorted(set(expected) - set(full))
    unexpected = sorted(set(full) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensor names do not fit the model: missing {missing[:8]}"
                              f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}")
    for k, v in expected.items():
        if tuple(full[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: tensor {k!r} has shape {tuple(full[k].shape)}, "
                                  f"the model expects {tuple(v.shape)} (wrong config or wrong file)")
        if not full[k].is_floating_point() and v.is_floating_point():
            raise CheckpointError(f"{path}: tensor {k!r} has dtype {full[k].dtype}, expected floating point")
        if full[k].is_floating_point() and not bool(torch.isfinite(full[k]).all()):
            raise CheckpointError(f"{path}: tensor {k!r} holds NaN/Inf values")
    return {k: full[k].to(v.dtype) for k, v in expected.items()}


def weights_for_save(state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """Drop the tied head (safetensors refuses shared storage; the loader re-ties it)."""
    return {k: v for k, v in state.items() if not (tied and k == TIED_KEY)}


def save_model(model: SessaLM, folder: str | os.PathLike) -> str:
    """from_pretrained-style export of a plain SessaLM: model.safetensors + config.json (atomic writes)."""
    if not isinstance(model, SessaLM):
        raise TypeError(f"model must be a SessaLM, got {type(model).__name__}")
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    from sessa.utils.io import atomic_write

    with atomic_write(os.path.join(folder, MODEL_FILE), "wb", encoding=None) as f:
        from safetensors.torch import save

        f.write(save({k: v.detach().cpu().contiguous() for k, v in
                      weights_for_save(model.state_dict(), model.config.tie_embeddings).items()}))
    atomic_write_json(os.path.join(folder, CONFIG_FILE), {"model": model.config.to_dict()})
    return folder


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True) -> SessaLM:
    """Build a SessaLM from a checkpoint folder (or a run's out_dir -> its latest checkpoint), in eval mode."""
    folder = resolve_checkpoint(path)
    if verify:
        verify_files(folder, (MODEL_FILE, CONFIG_FILE))
    config = model_config(folder)
    model = SessaLM(config)
    file = os.path.join(folder, MODEL_FILE)
    model.load_state_dict(check_weights(model, upgrade_keys(_load_tensors(file)), file))
    return model.to(device).eval()


# ---------------------------------------------------------------- optimizer state

def flatten_optimizer(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """{"state": {fqn: {slot: v}}, "param_groups": [...]} -> (tensors "fqn::slot", JSON rest)."""
    tensors, scalars = {}, {}
    for fqn, slots in osd.get("state", {}).items():
        for slot, v in slots.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{fqn}::{slot}"] = v
            else:
                scalars[f"{fqn}::{slot}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in osd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str) -> dict[str, Any]:
    """Inverse of flatten_optimizer (betas back to tuples)."""
    state: dict[str, dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        if "::" not in key:
            raise CheckpointError(f"{path}: optimizer entry {key!r} is not of the form 'param::slot'")
        fqn, slot = key.rsplit("::", 1)
        state.setdefault(fqn, {})[slot] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------- writing a training checkpoint

def _maybe_pause(step: int) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    want, seconds, marker = spec.split(":", 2)
    if int(want) == step:
        with open(marker, "w", encoding="utf-8") as f:
            f.write(str(os.getpid()))
        time.sleep(float(seconds))


def write_checkpoint(root: str, step: int, weights: dict[str, torch.Tensor], optim: dict[str, Any],
                     config: dict[str, Any], state: dict[str, Any], keep_last: int) -> str:
    """Write one checkpoint folder atomically (call on the writing rank only); prune to keep_last."""
    final = os.path.join(root, step_dir_name(step))
    # replace=True: the same step saved again (a run resumed from an earlier checkpoint of this folder)
    with atomic_dir(final, replace=True) as tmp:
        _save_tensors(weights, os.path.join(tmp, MODEL_FILE))
        _maybe_pause(step)
        opt_tensors, opt_meta = flatten_optimizer(optim)
        _save_tensors(opt_tensors, os.path.join(tmp, OPTIM_FILE))
        atomic_write_json(os.path.join(tmp, CONFIG_FILE), config)
        files = {n: {"bytes": os.path.getsize(os.path.join(tmp, n)), "sha256": _sha256(os.path.join(tmp, n))}
                 for n in (MODEL_FILE, OPTIM_FILE, CONFIG_FILE)}
        atomic_write_json(os.path.join(tmp, STATE_FILE),
                          {"format": FORMAT_VERSION, "step": step, **state, "optimizer": opt_meta, "files": files})
    atomic_write_text(os.path.join(root, LATEST), step_dir_name(step) + "\n")
    # keep the keep_last most recently WRITTEN ones (not the highest steps: after resuming from an earlier
    # checkpoint, the abandoned later steps must not push out the new ones)
    by_age = sorted(list_checkpoints(root), key=lambda sp: os.path.getmtime(os.path.join(sp[1], STATE_FILE)))
    for _, old in by_age[:-keep_last]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_training_checkpoint(folder: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model tensors, optimizer state dict, state.json) of a checkpoint, verified against state.json."""
    verify_files(folder)
    state = read_json(os.path.join(folder, STATE_FILE))
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{os.path.join(folder, STATE_FILE)}: format {state.get('format')!r} is not "
                              f"supported (expected {FORMAT_VERSION})")
    for key in ("step", "scheduler", "optimizer", "rng"):
        if key not in state:
            raise CheckpointError(f"{os.path.join(folder, STATE_FILE)}: missing field {key!r}")
    weights = upgrade_keys(_load_tensors(os.path.join(folder, MODEL_FILE)))
    opt_path = os.path.join(folder, OPTIM_FILE)
    optim = unflatten_optimizer(_load_tensors(opt_path), state["optimizer"], opt_path)
    optim["state"] = upgrade_keys(optim["state"])
    for group in optim["param_groups"]:
        group["params"] = [upgrade_key(name) for name in group["params"]]
    return weights, optim, state
