"""A tiny synthetic task following the sessa.tasks contract (docs/CONTRACTS.md), for the trainer's tests.

Each example is a sequence x_0..x_{T-1} over `vocab_size` symbols where x_{t+1} = (x_t + stride) mod V
with stride fixed per example and revealed by the first two tokens; only positions >= 2 are scored, so a
model that learns the rule gets the loss down quickly. Importable as `synthtask:build_synth_task`.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

IGNORE_INDEX = -100


class _Split(Dataset):
    def __init__(self, n: int, seq_len: int, vocab: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, vocab, (n, 1), generator=g)
        stride = torch.randint(1, 4, (n, 1), generator=g)
        self.ids = (start + stride * torch.arange(seq_len)[None]) % vocab
        self.labels = self.ids.clone()
        self.labels[:, :2] = IGNORE_INDEX

    def __len__(self) -> int:
        return self.ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class SynthTask:
    name = "synth"
    metric_names = ("loss", "accuracy")

    def __init__(self, n_train: int = 256, n_val: int = 64, seq_len: int = 16, vocab_size: int = 16,
                 seed: int = 0) -> None:
        self.vocab_size, self.pad_id = vocab_size, 0
        self.options = {"n_train": n_train, "n_val": n_val, "seq_len": seq_len, "vocab_size": vocab_size, "seed": seed}
        self._splits = {"train": _Split(n_train, seq_len, vocab_size, seed),
                        "validation": _Split(n_val, seq_len, vocab_size, seed + 1)}

    def dataset(self, split: str) -> Dataset:
        return self._splits[split]

    def collate(self, examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.stack([e["input_ids"] for e in examples]),
                "labels": torch.stack([e["labels"] for e in examples])}


def build_synth_task(**options) -> SynthTask:
    return SynthTask(**options)
