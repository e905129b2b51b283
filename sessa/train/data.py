"""Deterministic, resumable batching: the examples of optimizer step k are a pure function of (seed, k).

Each epoch is a fresh permutation seeded by (seed, epoch); the global batch of step k is the slice
[(k mod n_batches) * B, +B) of epoch k // n_batches (the incomplete tail of an epoch is dropped). Rank r of
W takes the r-th contiguous share of that global batch (DistributedSampler-style shards), so the set of
examples per step -- and hence the loss curve -- does not depend on the world size, and resuming at step k
needs nothing but k.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch


class GlobalBatches:
    """Index plan for a dataset of `n` examples, global batch `batch_size`, seeded shuffling per epoch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise ValueError(f"the training split has {n} examples, fewer than batch_size = {batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.batches_per_epoch = n // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def position(self, step: int) -> dict[str, int]:
        """Data position before optimizer step `step` (0-based), as saved in state.json."""
        return {"epoch": step // self.batches_per_epoch, "batch_in_epoch": step % self.batches_per_epoch,
                "examples_seen": step * self.batch_size}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=g), epoch
        return self._perm

    def global_batch(self, step: int) -> list[int]:
        pos = self.position(step)
        start = pos["batch_in_epoch"] * self.batch_size
        return self._permutation(pos["epoch"])[start:start + self.batch_size].tolist()

    def rank_batch(self, step: int, rank: int, world_size: int) -> list[int]:
        share = self.batch_size // world_size
        return self.global_batch(step)[rank * share:(rank + 1) * share]


def accumulation(batch_size: int, grad_accum: int, world_size: int) -> tuple[int, int]:
    """(micro-batch size, accumulation steps) per rank so that micro * accum * world == batch_size.

    The micro-batch never exceeds the single-process one (batch_size // grad_accum): memory per forward is
    the same whatever the world size; accumulation shrinks as ranks are added.
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world_size})")
    share = batch_size // world_size
    micro_max = batch_size // grad_accum
    accum = -(-share // micro_max)  # ceil
    while share % accum:
        accum += 1
    return share // accum, accum


def collate_micro(task: Any, dataset: Any, indices: Sequence[int], micro: int) -> list[dict[str, torch.Tensor]]:
    """Split the rank's indices into micro-batches and collate each with the task's collate."""
    return [task.collate([dataset[i] for i in indices[j:j + micro]]) for j in range(0, len(indices), micro)]


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader worker start-up: leave SIGTERM / SIGINT to the main process, which finishes its step,
    checkpoints and then shuts the workers down (schedulers and Ctrl-C signal every process of a job, and a
    worker that dies first would end the run without a checkpoint)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def step_batches(task: Any, dataset: Any, plan: GlobalBatches, start: int, end: int, rank: int, world_size: int,
                 micro: int, num_workers: int = 0) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Yield, for each step in [start, end), this rank's collated micro-batches.

    num_workers > 0 builds them in DataLoader worker processes (prefetching ahead of the model); the
    indices are fixed in advance, so the batches are identical either way.
    """
    if num_workers == 0:
        for step in range(start, end):
            yield collate_micro(task, dataset, plan.rank_batch(step, rank, world_size), micro)
        return
    from torch.utils.data import DataLoader

    def micro_indices() -> Iterator[list[int]]:
        for step in range(start, end):
            idx = plan.rank_batch(step, rank, world_size)
            for j in range(0, len(idx), micro):
                yield idx[j:j + micro]

    per_step = -(-plan.batch_size // world_size // micro)
    loader = DataLoader(dataset, batch_sampler=list(micro_indices()), collate_fn=task.collate,
                        num_workers=num_workers, prefetch_factor=max(2, per_step),
                        worker_init_fn=ignore_stop_signals)
    it = iter(loader)
    for _ in range(start, end):
        yield [next(it) for _ in range(per_step)]
