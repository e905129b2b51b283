"""Shared machinery for tasks: the Task interface, lazy seeded datasets, right-padding collate.

A task turns (split, index) into one example {"input_ids": LongTensor[T], "labels": LongTensor[T]}
with labels = IGNORE_INDEX where the model is not scored (labels are aligned with input_ids; the LM
shifts internally). Synthetic tasks generate each example from its own seed, so any index can be
produced on demand, in any order, identically on every machine.
"""

from __future__ import annotations

import functools
import operator
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from sessa.utils import IGNORE_INDEX
from sessa.utils.checks import check_split

CLASSIFICATION_METRICS = ("loss", "accuracy")
LM_METRICS = ("loss", "perplexity", "top1", "top5")


def example_rng(task: str, seed: int, split: str, index: int) -> random.Random:
    """Per-example RNG; a str seed is hashed with SHA-512 by `random`, so it is the same on every machine."""
    return random.Random(f"sessa/{task}/{seed}/{split}/{index}")


def pad_collate(examples: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples to [B, T_max]: input_ids with pad_id, labels with IGNORE_INDEX."""
    if len(examples) == 0:
        raise ValueError("collate needs at least one example, got an empty list")
    T = max(int(e["input_ids"].numel()) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    for b, e in enumerate(examples):
        n = int(e["input_ids"].numel())
        ids[b, :n] = e["input_ids"]
        labels[b, :n] = e["labels"]
    return {"input_ids": ids, "labels": labels}


class LazyDataset(Dataset):
    """A map-style torch Dataset whose item i is produced by `make(i)` (no storage, any order)."""

    def __init__(self, size: int, make: Callable[[int], dict[str, torch.Tensor]]) -> None:
        self.size = size
        self.make = make

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if isinstance(index, bool):
            raise TypeError("index must be an int, got bool")
        try:
            index = operator.index(index)  # ints, numpy and 0-d torch integers
        except TypeError:
            raise TypeError(f"index must be an int, got {type(index).__name__}") from None
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index must lie in [0, {self.size}), got {index}")
        return self.make(index)


def to_example(ids: Sequence[int], labels: Sequence[int]) -> dict[str, torch.Tensor]:
    """Pack python lists into the contract's {"input_ids", "labels"} LongTensors."""
    return {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}


class Task:
    """Interface every task implements (see docs/CONTRACTS.md, "Tasks")."""

    name: str = ""
    vocab_size: int
    pad_id: int
    metric_names: tuple[str, ...] = CLASSIFICATION_METRICS
    options: dict[str, Any]

    def split_size(self, split: str) -> int:
        """Number of examples in `split`."""
        raise NotImplementedError

    def example(self, split: str, index: int) -> dict[str, torch.Tensor]:
        """Example `index` of `split` as {"input_ids", "labels"}."""
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:
        """torch Dataset of {"input_ids": LongTensor[T], "labels": LongTensor[T]}."""
        split = check_split(split)
        # a partial of a bound method (not a lambda) so DataLoader workers can pickle it under "spawn"
        return LazyDataset(self.split_size(split), functools.partial(self.example, split))

    def collate(self, examples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Right-pad to the longest example: {"input_ids": [B, T], "labels": [B, T]}."""
        return pad_collate(examples, self.pad_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"


class SyntheticTask(Task):
    """A generated task that can also render an example as text for the authors' TSV layout."""

    def text_example(self, split: str, index: int) -> tuple[str, str]:
        """(Text, Answer) strings of example `index` for the TSV files."""
        raise NotImplementedError

    def label_vocab(self) -> list[str] | None:
        """Answer vocabulary written next to the TSVs (None when answers are open-ended)."""
        return None


