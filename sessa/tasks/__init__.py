"""Tasks for training and benchmarking: `build_task(name, **options)`.

Built-in tasks: "symbolsoup" (the paper's 20-way long-context classification), "diffuse_mqar" (the
paper's associative recall with multi-token keys, prefix-sharing distractors and controlled lags), "mqar"
(plain Zoology-style recall), "passkey" (needle retrieval at a chosen distance) and "lm" (offline
language modelling on a local corpus). Every task exposes vocab_size, pad_id, name, options, metric_names,
dataset(split) and collate (docs/CONTRACTS.md, "Tasks").

Your own task is named "package.module:factory" (called with the task options). Naming Python code runs it,
so it is accepted only where the caller says the name is trusted (`allow_import=True`: the command line and
your own Python code) and never from a file such as a checkpoint's config.json or a YAML config.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sessa.tasks.base import IGNORE_INDEX, Task
from sessa.utils import did_you_mean
from sessa.utils.checks import SPLITS

# name -> "module:Class", imported on first use so `import sessa.tasks` stays cheap
BUILTIN_TASKS: dict[str, str] = {
    "symbolsoup": "sessa.tasks.symbolsoup:SymbolSoup",
    "diffuse_mqar": "sessa.tasks.diffuse_mqar:DiffuseMQAR",
    "mqar": "sessa.tasks.mqar:MQAR",
    "passkey": "sessa.tasks.passkey:Passkey",
    "lm": "sessa.tasks.lm:LMTask",
}


class UntrustedTaskError(ValueError):
    """A task name that would import Python code came from a source not allowed to name code."""


def available_tasks() -> list[str]:
    """The built-in task names."""
    return sorted(BUILTIN_TASKS)


def is_code_reference(name: str) -> bool:
    """True for "package.module:factory" names, i.e. names that would import and run Python code."""
    return isinstance(name, str) and name not in BUILTIN_TASKS and ":" in name


def check_task_name(name: object, *, allow_import: bool, source: str = "task") -> str:
    """`name` if it is a built-in task, or (with allow_import) a "module:factory" reference; else an error.

    `source` names where the name came from, for the message (e.g. "the checkpoint's config.json").
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"{source} must be a non-empty str naming a task, got {name!r}")
    if name in BUILTIN_TASKS:
        return name
    if not is_code_reference(name):
        raise ValueError(f"{source} must be one of {available_tasks()} or 'package.module:factory', got {name!r}"
                         f"{did_you_mean(name, BUILTIN_TASKS)}")
    mod, _, attr = name.partition(":")
    if not (mod and attr and all(p.isidentifier() for p in mod.split(".")) and attr.isidentifier()):
        raise ValueError(f"{source} {name!r} is not of the form 'package.module:factory'")
    if not allow_import:
        raise UntrustedTaskError(
            f"{source} names Python code ({name!r}); only the built-in tasks {available_tasks()} are accepted "
            "from a file. To run your own task factory, name it on the command line (--task package.module:factory"
            ", or --allow-task-import for a YAML config you trust) or build it in Python "
            "(sessa.tasks.build_task(name, allow_import=True, ...))"
        )
    return name


def get_task_class(name: str, *, allow_import: bool = False) -> Callable[..., Task]:
    """The class (or factory) a task name stands for; see `check_task_name` for what is accepted."""
    name = check_task_name(name, allow_import=allow_import)
    if name in BUILTIN_TASKS:
        module, cls = BUILTIN_TASKS[name].split(":")
        return getattr(importlib.import_module(module), cls)
    mod, attr = name.split(":", 1)
    try:
        factory = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"task {name!r}: cannot import factory {attr!r} from module {mod!r} ({e})") from None
    if not callable(factory):
        raise TypeError(f"task {name!r}: {attr!r} in module {mod!r} is not callable")
    return factory


def build_task(name: str, /, *, allow_import: bool = False, **options: object) -> Task:
    """A task by name with its options (unknown ones raise TypeError).

    `name` is a built-in task, or with `allow_import=True` a trusted "package.module:factory" reference.
    """
    factory = get_task_class(name, allow_import=allow_import)
    try:
        task = factory(**options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise TypeError(f"task {name!r} got an unknown option: {e}") from None
        raise
    return check_task_object(task, name)


def check_task_object(task: object, name: str = "task") -> Task:
    """`task` if it has what training and evaluation use (vocab_size, dataset, collate, metric_names)."""
    for attr in ("vocab_size", "dataset", "collate", "metric_names"):
        if not hasattr(task, attr):
            raise TypeError(f"{name}: {task!r} lacks {attr!r} (see docs/CONTRACTS.md, Tasks)")
    return task  # type: ignore[return-value]


__all__ = ["build_task", "available_tasks", "check_task_name", "get_task_class", "is_code_reference",
           "check_task_object",           "UntrustedTaskError", "BUILTIN_TASKS", "Task", "IGNORE_INDEX", "SPLITS"]
