"""Checkpoints: safetensors for every tensor (model, optimizer), JSON for config and training state.

Layout of `<out_dir>/checkpoints/step_00000100/`:
  model.safetensors      full (gathered) weights; the tied LM head is stored once (as model.embed_tokens.weight)
  optimizer.safetensors  AdamW moments and step counts, keyed "<param name>::<slot>"
  config.json            {"model": SessaConfig dict, "train": TrainConfig dict}
  state.json             step, scheduler, data position, RNG states, loss history, partial logging window
  manifest.json          size + sha256 of each file above (written last; checked before any is trusted)
A checkpoint folder is filled under a ".tmp-*" name and renamed when complete (atomic), then
`<out_dir>/checkpoints/latest` is atomically rewritten; only the last `keep_last` folders are kept.
Checkpoints written by sessa 0.1 (other weight names) load too: names are upgraded on read (sessa.models.legacy).
The tensor files hold tensors only (no time stamps or run metadata: those live in state.json), so the
same training state always gives byte-identical files.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sessa.models import SessaConfig, SessaLM
from sessa.models.legacy import upgrade_key, upgrade_keys
from sessa.utils.io import (
    MAX_CONFIG_BYTES,
    MAX_STATE_BYTES,
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json_file,
)
from sessa.utils.manifest import MANIFEST_FILE, IntegrityError, check_files, verify_manifest, write_manifest

FORMAT_VERSION = 2
MODEL_FILE, OPTIM_FILE, CONFIG_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "config.json", \
    "state.json"
CHECKPOINT_FILES = (MODEL_FILE, OPTIM_FILE, CONFIG_FILE, STATE_FILE)
LATEST = "latest"
_STEP_DIR = re.compile(r"^step_(\d+)$")
TIED_KEY, TIED_SOURCE = "lm_head.weight", "model.embed_tokens.weight"
# the only safetensors metadata: the library's order of several keys varies between processes, which would
# make otherwise identical files differ byte for byte
_TENSOR_METADATA = {"format": "pt"}


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


def _pointer_target(root: str) -> str | None:
    """The step folder named by `root/latest` (a bare step_* name: the pointer cannot lead elsewhere)."""
    pointer = os.path.join(root, LATEST)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8", errors="replace") as f:
        name = f.read(64).strip()
    path = os.path.join(root, name)
    return path if _STEP_DIR.match(name) and os.path.isfile(os.path.join(path, STATE_FILE)) else None


def latest_checkpoint(root: str) -> str | None:
    """The folder named by `root/latest`, else the highest complete step folder, else None."""
    found = _pointer_target(root)
    if found:
        return found
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def resume_candidates(root: str) -> list[str]:
    """Checkpoints to try for `--resume auto`, highest step first. (Not `latest` first: a save killed after
    its folder was renamed but before `latest` was rewritten is complete and newer. Any two checkpoints of
    one out_dir lie on the same trajectory, since resuming refuses a config that would change it.)"""
    return [f for _, f in reversed(list_checkpoints(root))]


def resolve_checkpoint(path: str | os.PathLike) -> str:
    """Accept a checkpoint folder, a run's out_dir, its checkpoints/ folder or the checkpoints/latest pointer
    file; return the checkpoint folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isfile(path) and os.path.basename(path) == LATEST:
        found = _pointer_target(os.path.dirname(path))
        if found:
            return found
        raise CheckpointError(f"{path}: names no complete checkpoint folder next to it")
    if any(os.path.isfile(os.path.join(path, n)) for n in (MODEL_FILE, STATE_FILE, CONFIG_FILE)):
        return path
    for root in (os.path.join(path, "checkpoints"), path):
        found = latest_checkpoint(root)
        if found:
            return found
    raise CheckpointError(f"{path}: no checkpoint found (expected {MODEL_FILE} or a checkpoints/step_* folder)")


# ---------------------------------------------------------------- files

def verify_checkpoint(folder: str, required: tuple[str, ...] = (MODEL_FILE, CONFIG_FILE),
                      names: tuple[str, ...] | None = None) -> None:
    """Check `folder` against its manifest.json (every `required` file listed; sizes and sha256 of the listed
    files, or only of `names`). Call it before reading anything else from a folder you did not just write.

    A training checkpoint of sessa 0.1 has no manifest: its state.json recorded the size and sha256 of the
    other files, and those are checked instead (state.json itself was not covered then).
    """
    legacy = None if os.path.isfile(os.path.join(folder, MANIFEST_FILE)) else _v0_1_files(folder)
    try:
        if legacy is not None:  # the files table a sessa 0.1 state.json recorded (plain names only)
            check_files(folder, legacy, [n for n in required if n != STATE_FILE], names, source=STATE_FILE)
        else:
            verify_manifest(folder, required, names)
    except IntegrityError as e:
        raise CheckpointError(str(e)) from None


def _v0_1_files(folder: str) -> dict[str, Any] | None:
    """state.json["files"] of a sessa 0.1 training checkpoint (format 1), or None for any other folder."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        return None
    state = read_json(path, max_bytes=MAX_STATE_BYTES)
    files = state.get("files")
    return files if state.get("format") == 1 and isinstance(files, dict) else None


def _save_tensors(tensors: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, path, metadata=_TENSOR_METADATA)


def _load_tensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file missing; the checkpoint folder is incomplete")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for bad headers/short files
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated): {e}") from None


def read_json(path: str, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """A JSON object from a checkpoint file, bounded in size and depth; CheckpointError names the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file missing; the checkpoint folder is incomplete")
    try:
        data = read_json_file(path, max_bytes=max_bytes, what=os.path.basename(path))
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


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
    """from_pretrained-style export of a plain SessaLM: model.safetensors + config.json + manifest.json.

    Each file is written atomically and the manifest last, so a folder is either verifiable or refused on
    load (never silently half old, half new).
    """
    if not isinstance(model, SessaLM):
        raise TypeError(f"model must be a SessaLM, got {type(model).__name__}")
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"folder must be a folder, {folder!r} is a file")
    os.makedirs(folder, exist_ok=True)
    from safetensors.torch import save

    weights = weights_for_save(model.state_dict(), model.config.tie_embeddings)
    atomic_write_bytes(os.path.join(folder, MODEL_FILE),
                       save({k: v.detach().cpu().contiguous() for k, v in weights.items()}, metadata=_TENSOR_METADATA))
    atomic_write_json(os.path.join(folder, CONFIG_FILE), {"model": model.config.to_dict()})
    write_manifest(folder, (MODEL_FILE, CONFIG_FILE))
    return folder


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True) -> SessaLM:
    """Build a SessaLM from a checkpoint folder (or a run's out_dir -> its latest checkpoint), in eval mode.

    verify=True (default) checks model.safetensors and config.json against the folder's manifest.json
    before reading them; verify=False skips that (folders written by older versions have no manifest).
    """
    folder = resolve_checkpoint(path)
    if verify:
        verify_checkpoint(folder, (MODEL_FILE, CONFIG_FILE), names=(MODEL_FILE, CONFIG_FILE))
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

def write_checkpoint(root: str, step: int, weights: dict[str, torch.Tensor], optim: dict[str, Any],
                     config: dict[str, Any], state: dict[str, Any], keep_last: int) -> str:
    """Write one checkpoint folder atomically (call on the writing rank only); prune to keep_last."""
    final = os.path.join(root, step_dir_name(step))
    # replace=True: the same step saved again (a run resumed from an earlier checkpoint of this folder)
    with atomic_dir(final, replace=True) as tmp:
        _save_tensors(weights, os.path.join(tmp, MODEL_FILE))
        opt_tensors, opt_meta = flatten_optimizer(optim)
        _save_tensors(opt_tensors, os.path.join(tmp, OPTIM_FILE))
        atomic_write_json(os.path.join(tmp, CONFIG_FILE), config)
        atomic_write_json(os.path.join(tmp, STATE_FILE),
                          {"format": FORMAT_VERSION, "step": step, **state, "optimizer": opt_meta})
        write_manifest(tmp, CHECKPOINT_FILES)
    atomic_write_text(os.path.join(root, LATEST), step_dir_name(step) + "\n")
    # keep the keep_last most recently WRITTEN ones (not the highest steps: after resuming from an earlier
    # checkpoint, the abandoned later steps must not push out the new ones)
    by_age = sorted(list_checkpoints(root), key=lambda sp: os.path.getmtime(os.path.join(sp[1], STATE_FILE)))
    for _, old in by_age[:-keep_last]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_training_checkpoint(folder: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model tensors, optimizer state dict, state.json) of a checkpoint, every file verified first."""
    verify_checkpoint(folder, CHECKPOINT_FILES)
    state_path = os.path.join(folder, STATE_FILE)
    state = read_json(state_path, max_bytes=MAX_STATE_BYTES)
    if state.get("format") not in (1, FORMAT_VERSION):  # 1: sessa 0.1 (verified through state.json)
        raise CheckpointError(f"{state_path}: format {state.get('format')!r} is not supported (expected "
                              f"{FORMAT_VERSION})")
    for key in ("step", "scheduler", "optimizer", "rng"):
        if key not in state:
            raise CheckpointError(f"{state_path}: missing field {key!r}")
    weights = upgrade_keys(_load_tensors(os.path.join(folder, MODEL_FILE)))
    opt_path = os.path.join(folder, OPTIM_FILE)
    optim = unflatten_optimizer(_load_tensors(opt_path), state["optimizer"], opt_path)
    optim["state"] = upgrade_keys(optim["state"])
    for group in optim["param_groups"]:
        group["params"] = [upgrade_key(name) for name in group["params"]]
    return weights, optim, state


def newest_valid_checkpoint(root: str, skipped: Callable[[str, str], None] | None = None
                            ) -> tuple[str, tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]] | None:
    """(folder, read_training_checkpoint(folder)) of the newest checkpoint under `root` that verifies, or None.

    Each one that does not verify is reported through skipped(folder, reason) and the previous one is tried.
    """
    for folder in resume_candidates(root):
        try:
            return folder, read_training_checkpoint(folder)
        except CheckpointError as e:
            if skipped is not None:
                skipped(folder, str(e))
    return None

