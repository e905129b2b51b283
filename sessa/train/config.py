"""TrainConfig: every training hyper-parameter, validated on construction; YAML in, JSON-able dict out."""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from sessa.models.config import SessaConfig
from sessa.utils import did_you_mean
from sessa.utils.checks import SPLITS, check_bool, check_choice, check_float, check_int

PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
CKPT_EVERY_RANGE = (10, 1000)  # the default checkpoint interval's bounds, in steps (checkpoint_interval)


def _yaml_float(v: object) -> object:
    """PyYAML reads '3e-4' (no dot) as a str; accept such numeric strings for float fields."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


@dataclass
class TrainConfig:
    """AdamW + linear warmup + cosine decay to min_lr_ratio * lr, on `task` (sessa.tasks.build_task).

    batch_size is the GLOBAL batch (sequences per optimizer step) whatever the number of processes;
    grad_accum splits it into micro-batches of batch_size // grad_accum on one process, and under torchrun
    the accumulation count is re-derived so the global batch stays the same (see docs/training.md).
    """

    model: SessaConfig = field(default_factory=SessaConfig)
    task: str = "symbolsoup"
    task_options: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0
    precision: str = "fp32"
    seed: int = 0
    eval_every: int = 0  # 0: evaluate only at the end
    eval_batches: int | None = 8  # None: the whole eval split
    eval_batch_size: int | None = None  # sequences per evaluation batch (None: batch_size)
    eval_split: str = "validation"
    ckpt_every: int | None = None  # None: about every 10 % of the run (checkpoint_interval); 0: only at the end
    keep_last: int = 3
    out_dir: str | None = None  # None: write nothing (no logs, no checkpoints) -- used by `sessa bench`
    resume: bool | str = False  # True/"auto": latest checkpoint in out_dir if any; or a checkpoint folder
    stop_at: int | None = None  # stop after this step (schedule still spans `steps`): time-sliced jobs
    log_every: int = 10
    progress: bool = True
    tensorboard: bool = True  # used only when torch.utils.tensorboard imports
    fsdp: bool = False
    device: str = "auto"
    threads: int | str | None = None  # torch CPU threads: N, "auto" (free cores; sessa train's default), None: keep
    num_workers: int = 0  # DataLoader worker processes building the batches ahead (0: in the training loop)
    check_finite: bool = True  # stop with NonFiniteLossError on NaN/Inf loss or gradient norm

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay", "adam_eps", "min_lr_ratio", "grad_clip"):
            setattr(self, name, _yaml_float(getattr(self, name)))
        if isinstance(self.model, dict):
            self.model = SessaConfig.from_dict(self.model)
        if not isinstance(self.model, SessaConfig):
            raise TypeError(f"model must be a SessaConfig or a dict of its fields, got {type(self.model).__name__}")
        if not isinstance(self.task, str) or not self.task:
            raise TypeError(f"task must be a non-empty str (a sessa.tasks name or 'module:factory'), got {self.task!r}")
        if not isinstance(self.task_options, dict):
            raise TypeError(f"task_options must be a dict, got {type(self.task_options).__name__}")
        for name, lo in (("steps", 1), ("batch_size", 1), ("grad_accum", 1), ("warmup_steps", 0), ("seed", 0),
                         ("eval_every", 0), ("keep_last", 1), ("log_every", 1),
                         ("num_workers", 0)):
            check_int(name, getattr(self, name), lo=lo)
        check_int("eval_batches", self.eval_batches, lo=1, none_ok=True)
        check_int("eval_batch_size", self.eval_batch_size, lo=1, none_ok=True)
        check_int("stop_at", self.stop_at, lo=1, none_ok=True)
        check_int("ckpt_every", self.ckpt_every, lo=0, none_ok=True)
        if not (self.threads is None or self.threads == "auto" or (type(self.threads) is int and self.threads >= 1)):
            error = ValueError if type(self.threads) is int else TypeError
            raise error(f"threads must be an int >= 1, 'auto' or null, got {self.threads!r}")
        if self.stop_at is not None and self.stop_at > self.steps:
            raise ValueError(f"stop_at must lie in [1, steps = {self.steps}], got {self.stop_at}")
        if self.warmup_steps >= self.steps:  # the run would end before the learning rate peaks
            capped = self.steps // 10
            warnings.warn(f"warmup_steps ({self.warmup_steps}) >= steps ({self.steps}): the learning rate would "
                          f"never reach lr; using warmup_steps = steps // 10 = {capped} (set it explicitly to "
                          f"silence this)", UserWarning, stacklevel=3)
            self.warmup_steps = capped
        if self.batch_size % self.grad_accum:
            raise ValueError(f"grad_accum ({self.grad_accum}) must divide batch_size ({self.batch_size})")
        check_float("lr", self.lr, lo=0.0, hi=10.0, lo_open=True)
        check_float("weight_decay", self.weight_decay, lo=0.0, hi=10.0)
        check_float("adam_eps", self.adam_eps, lo=0.0, hi=1.0, lo_open=True)
        check_float("min_lr_ratio", self.min_lr_ratio, lo=0.0, hi=1.0)
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise TypeError(f"betas must be a pair [beta1, beta2], got {self.betas!r}")
        for i, b in enumerate(self.betas):
            check_float(f"betas[{i}]", b, lo=0.0, hi=1.0, hi_open=True)
        check_float("grad_clip", self.grad_clip, lo=0.0, lo_open=True, none_ok=True)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("device", self.device, DEVICES)
        check_choice("eval_split", self.eval_split, SPLITS)  # before training, not after the whole run
        for name in ("progress", "tensorboard", "fsdp", "check_finite"):
            check_bool(name, getattr(self, name))
        if self.out_dir is not None and not isinstance(self.out_dir, (str, os.PathLike)):
            raise TypeError(f"out_dir must be a path or null, got {self.out_dir!r}")
        if self.out_dir is not None:
            self.out_dir = os.fspath(self.out_dir)
        if not isinstance(self.resume, (bool, str)):
            raise TypeError(f"resume must be true/false, 'auto' or a checkpoint folder, got {self.resume!r}")
        if self.resume in (True, "auto") and self.out_dir is None:
            raise ValueError("resume=auto looks for checkpoints in out_dir: set out_dir (or give a checkpoint folder)")

    @property
    def checkpoint_interval(self) -> int:
        """Steps between checkpoints (0: only the final one; every run with out_dir writes that one).

        ckpt_every None (the default, for every task): every ceil(steps / 10) steps, so a stopped run loses
        about a tenth of its work at most, but no more often than every CKPT_EVERY_RANGE[0] steps (short
        runs) and at least every CKPT_EVERY_RANGE[1] steps (long runs)."""
        if self.ckpt_every is not None:
            return self.ckpt_every
        lo, hi = CKPT_EVERY_RANGE
        return min(hi, max(lo, -(-self.steps // 10)))

    @property
    def micro_batch_size(self) -> int:
        """Sequences per forward pass on one process (world size 1)."""
        return self.batch_size // self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (model nested as a dict; betas as a list)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["betas"] = list(self.betas)
        d["task_options"] = dict(self.task_options)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. parsed YAML); unknown keys raise ValueError naming them."""
        if not isinstance(d, dict):
            raise TypeError(f"a training config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}{did_you_mean(unknown[0], known)}; "
                             f"allowed: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: dict[str, Any] | None = None, *,
                  allow_task_import: bool = False) -> TrainConfig:
        """Read a YAML file, apply `overrides` (dotted keys such as 'model.d_model'), then validate.

        A file may name only built-in tasks unless `allow_task_import=True` says it is trusted to name code
        ("package.module:factory"); `overrides` come from the caller and may name a factory.
        """
        return cls.from_dict(apply_overrides(load_yaml(path, allow_task_import=allow_task_import), overrides or {}))


def load_yaml(path: str | os.PathLike, *, allow_task_import: bool = False) -> dict[str, Any]:
    """Parse a YAML training config into a dict; errors name the file.

    Bounded (1 MiB, 64 levels, no alias bombs, no key given twice; sessa.utils.io.load_yaml_file); an
    empty file is an error, not a default config. Its `task` must be a built-in task unless
    `allow_task_import` (the file is trusted to name Python code).
    """
    from sessa.utils.io import load_yaml_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"training config {path!r} does not exist")
    data = load_yaml_file(path, what="training config")
    if data is None:
        raise ValueError(f"{path}: the training config is empty; expected a mapping of TrainConfig keys "
                         f"(see configs/)")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training config must be a mapping of keys, got {type(data).__name__}")
    if "task" in data:
        from sessa.tasks import check_task_name

        check_task_name(data["task"], allow_import=allow_task_import, source=f"{path}: task")
    return data


def apply_overrides(d: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `d` with dotted keys set: {'model.d_model': 64, 'lr': 1e-3}."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = {}
            elif isinstance(child, SessaConfig):
                child = child.to_dict()
            elif not isinstance(child, dict):
                raise ValueError(f"cannot set {key!r}: {p!r} is not a mapping")
            node[p] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return out
