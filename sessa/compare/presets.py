"""Bench presets: model size, training budget and task sizes per scale (mirrored in configs/bench_*.yaml).

"laptop" is the README's main job: tiny models (D = 64, 2 blocks) on short sequences (Diffuse MQAR train lags
64-128, test up to 4x), a budget that fits about 2 minutes per model on 2 CPU cores; SymbolSoup (400-600
characters in the authors' counting, about 200-300 compact tokens) takes one block and 1500 steps.
"paper" and "paper-350m" follow the paper's sizes for GPU users (123.7M and 344.9M parameters with a
50,257-token vocabulary; fewer with a task's small vocabulary, e.g. 85M and 287M on SymbolSoup); their
SymbolSoup examples are 1024-2048 tokens long as in the paper.
A preset's "budget" holds sessa.train.TrainConfig fields; "mixer_options" maps a mixer name to the options
its matched baseline starts from; "per_task" maps a task name to "model" / "budget" entries that override the
preset's for that task (e.g. SymbolSoup's longer sequences need one block and more steps on a laptop).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from sessa.layers.mixers import MIXERS

# models beyond the mixer table: the paper's ablation of Sessa's feedback (same width as "sessa")
VARIANTS: dict[str, dict[str, Any]] = {"sessa-nofb": {"mixer": "sessa", "feedback": False}}
VARIANT_SUMMARY = {"sessa-nofb": "Sessa without feedback (s = f): the paper's ablation, Sessa's width"}


def model_summary(name: str) -> str:
    """One line naming a bench model: a mixer's `summary` (else its docstring's first line) or a variant's."""
    if name in VARIANT_SUMMARY:
        return VARIANT_SUMMARY[name]
    cls = MIXERS[name]
    return getattr(cls, "summary", None) or (cls.__doc__ or name).strip().splitlines()[0]


def model_names() -> tuple[str, ...]:
    """Every model `sessa bench` can train: each mixer of sessa.layers.mixers.MIXERS, then the variants."""
    return (*MIXERS, *VARIANTS)


_TASKS_LAPTOP: dict[str, dict[str, Any]] = {
    "symbolsoup": {"min_len": 400, "max_len": 600, "tokenization": "compact", "n_train": 20000,
                   "n_validation": 200, "n_test": 1000},
    "diffuse_mqar": {"n_train": 20000, "n_validation": 200, "n_test": 1000},
    "mqar": {"n_validation": 200, "n_test": 1000},
    "passkey": {"n_validation": 200, "n_test": 500},
    "lm": {"block_size": 128},
}
_TASKS_PAPER: dict[str, dict[str, Any]] = {
    "symbolsoup": {"min_len": 1024, "max_len": 2048, "n_train": 20000, "n_validation": 2000, "n_test": 2000},
    "diffuse_mqar": {"n_train": 100000, "n_validation": 1000, "n_test": 1000},
    "mqar": {"seq_len": 1024, "num_pairs": 64},
    "passkey": {"distance": [256, 512, 1024, 2048]},
    "lm": {},
}

PRESETS: dict[str, dict[str, Any]] = {
    "laptop": {
        "model": {"d_model": 64, "n_layers": 2, "n_heads": 1, "impl": "naive", "max_seq_len": 1024},
        "budget": {"steps": 400, "batch_size": 32, "lr": 3e-3, "warmup_steps": 50, "min_lr_ratio": 0.1,
                   "weight_decay": 0.1, "grad_clip": 1.0, "eval_batches": 8, "eval_batch_size": 64},
        "tasks": _TASKS_LAPTOP,
        "seeds": [0],
        # SymbolSoup: one block learns where two stay at the class prior, and it needs more steps
        "per_task": {"lm": {"budget": {"batch_size": 16}},
                     "symbolsoup": {"model": {"n_layers": 1}, "budget": {"steps": 1500, "warmup_steps": 100}}},
    },
    "paper": {
        "model": {"d_model": 768, "n_layers": 16, "n_heads": 12, "impl": "auto", "max_seq_len": 2048},
        "budget": {"steps": 20000, "batch_size": 32, "lr": 3e-4, "warmup_steps": 1000, "min_lr_ratio": 0.1,
                   "weight_decay": 0.1, "grad_clip": 1.0, "eval_batches": None, "eval_batch_size": 32,
                   "precision": "bf16"},
        "tasks": _TASKS_PAPER,
        "seeds": [0, 1],
        "mixer_options": {"mamba2": {"expand": 2, "head_dim": 64, "state_size": 64},
                          "gated_deltanet": {"num_heads": 6, "chunk_size": 64}},
    },
    "paper-350m": {
        "model": {"d_model": 1152, "n_layers": 24, "n_heads": 18, "impl": "auto", "max_seq_len": 2048},
        "budget": {"steps": 20000, "batch_size": 32, "lr": 2e-4, "warmup_steps": 1000, "min_lr_ratio": 0.1,
                   "weight_decay": 0.1, "grad_clip": 1.0, "eval_batches": None, "eval_batch_size": 16,
                   "precision": "bf16"},
        "tasks": _TASKS_PAPER,
        "seeds": [0, 1],
        "mixer_options": {"mamba2": {"expand": 2, "head_dim": 64, "state_size": 64},
                          "gated_deltanet": {"num_heads": 9, "chunk_size": 64}},
    },
}

_KEYS = {"model", "budget", "tasks", "seeds", "mixer_options", "per_task"}


def get_preset(name_or_path: str) -> dict[str, Any]:
    """A preset by name (laptop, paper, paper-350m) or read from a YAML file with the same keys."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise TypeError(f"preset must be a preset name or a YAML path, got {name_or_path!r}")
    if name_or_path in PRESETS:
        return copy.deepcopy(PRESETS[name_or_path])
    if not name_or_path.endswith((".yaml", ".yml")):
        raise ValueError(f"preset must be one of {sorted(PRESETS)} or a .yaml file, got {name_or_path!r}")
    if not os.path.isfile(name_or_path):
        raise FileNotFoundError(f"preset file {name_or_path!r} does not exist")
    from sessa.utils.io import load_yaml_file

    data = load_yaml_file(name_or_path, what="preset file")
    if not isinstance(data, dict):
        raise ValueError(f"preset file {name_or_path}: expected a mapping with keys {sorted(_KEYS)}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValueError(f"preset file {name_or_path}: unknown keys {unknown}; allowed: {sorted(_KEYS)}")
    missing = sorted({"model", "budget"} - set(data))
    if missing:
        raise ValueError(f"preset file {name_or_path}: missing keys {missing}")
    data.setdefault("tasks", {})
    data.setdefault("seeds", [0])
    for key in ("model", "budget", "tasks", "mixer_options", "per_task"):
        if key in data and not isinstance(data[key], dict):
            raise ValueError(f"preset file {name_or_path}: {key!r} must be a mapping")
    for name, parts in data.get("per_task", {}).items():
        if not isinstance(parts, dict) or set(parts) - {"model", "budget"} or not all(
                isinstance(v, dict) for v in parts.values()):
            raise ValueError(f"preset file {name_or_path}: per_task maps a task name to a mapping with 'model' "
                             f"and/or 'budget' mappings (overriding the preset's for that task), got {name!r}: "
                             f"{parts!r}")
    for name, options in data.get("mixer_options", {}).items():
        if name not in MIXERS or not isinstance(options, dict):
            raise ValueError(f"preset file {name_or_path}: mixer_options maps a mixer of {list(MIXERS)} to a "
                             f"mapping of its options, got {name!r}: {options!r}")
    return data
