"""How many torch CPU threads a training process uses: a pure rule (choose_threads) and its application.

torch's default is one thread per core. On a shared machine, or with several processes per node, that
oversubscribes the cores and tiny models slow down many times over (a 2-core laptop running another job:
11 min instead of 41 s). "auto" therefore takes only the cores nobody else is using.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch itself reads at start-up


def choose_threads(*, env: Mapping[str, str], usable_cpus: int, local_world_size: int, load: float
                   ) -> tuple[int | None, str]:
    """(threads, reason) for threads="auto"; threads None means "leave torch's setting alone".

    A thread variable in `env` (OMP_NUM_THREADS, MKL_NUM_THREADS) is the user's choice and wins. Otherwise
    the cores this process may use, less those already busy (`load`, the 1-minute load average, rounded),
    shared among the `local_world_size` processes of this node; at least 1.
    """
    for name in THREAD_ENV_VARS:
        if env.get(name, "").strip():
            return None, f"{name}={env[name].strip()} is set"
    busy = max(0, round(load))
    free = max(0, usable_cpus - busy)
    n = max(1, free // max(1, local_world_size))
    per = f", {local_world_size} processes on this node" if local_world_size > 1 else ""
    return n, f"{usable_cpus} usable cores, {min(busy, usable_cpus)} busy (load {load:.2f}){per}"


def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def load_average() -> float:
    """The 1-minute load average (0 where the OS has none, e.g. Windows)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def local_world_size(env: Mapping[str, str]) -> int:
    """Processes on this node: torchrun's LOCAL_WORLD_SIZE (1 when not under torchrun or unreadable)."""
    try:
        return max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def apply_threads(threads: int | str | None, *, cuda: bool, say: Callable[[str], None]) -> int | None:
    """Set torch's intra-op threads per TrainConfig.threads; returns the previous count to restore, or None
    when nothing was changed.

    None keeps torch's setting, silently. An int is used as given. "auto": choose_threads on a CPU run (one
    line through `say` telling what was chosen and how to override it); a CUDA run keeps torch's setting
    (there the CPU only feeds the GPU).
    """
    import torch

    if threads is None or (threads == "auto" and cuda):
        return None
    if threads == "auto":
        n, why = choose_threads(env=os.environ, usable_cpus=usable_cpus(), local_world_size=local_world_size(
            os.environ), load=load_average())
        if n is None:
            say(f"torch threads: {torch.get_num_threads()} ({why}); --threads N overrides it")
            return None
        say(f"torch threads: {n} ({why}); override with --threads N or OMP_NUM_THREADS")
    else:
        n = int(threads)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before
