"""Tasks for training and benchmarking: `build_task(name, **options)` and a registry of task classes.

Built-in tasks: "symbolsoup" (the paper's 20-way long-context classification), "diffuse_mqar" (the
paper's associative recall with multi-token keys, prefix-sharing distractors and controlled lags), "mqar"
(plain Zoology-style recall), "passkey" (needle retrieval at a chosen distance) and "lm" (offline
language modelling on a local corpus). Every task exposes vocab_size, pad_id, name, options, metric_names,
dataset(split) and collate (docs/CONTRACTS.md, "Tasks").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sessa.tasks.base import IGNORE_INDEX, Task
from sessa.utils.checks import SPLITS

# name -> "module:Class", imported on first use so `import sessa.tasks` stays cheap
_BUILTIN: dict[str, str] = {
    "symbolsoup": "sessa.tasks.symbolsoup:SymbolSoup",
    "diffuse_mqar": "sessa.tasks.diffuse_mqar:DiffuseMQAR",
    "mqar": "sessa.tasks.mqar:MQAR",
    "passkey": "sessa.tasks.passkey:Passkey",
    "lm": "sessa.tasks.lm:LMTask",
}
_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator: make `build_task(name, **options)` call the decorated class/factory."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")

    def deco(factory: Callable[..., Task]) -> Callable[..., Task]:
        _REGISTRY[name] = factory
        return factory

    return deco


def available_tasks() -> list[str]:
    """Names accepted by build_task."""
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def get_task_class(name: str) -> Callable[..., Task]:
    """The class (or factory) registered under `name`."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name not in _BUILTIN:
        raise ValueError(f"name must be one of {available_tasks()}, got {name!r}")
    module, cls = _BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_task(name: str, **options: object) -> Task:
    """A task by name; options are the task's keyword arguments (unknown ones raise TypeError)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    factory = get_task_class(name)
    try:
        return factory(**options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"task {name!r} got an unknown option: {e}") from None
        raise


__all__ = ["build_task", "register_task", "available_tasks", "get_task_class", "Task", "IGNORE_INDEX",
           "SPLITS"]
