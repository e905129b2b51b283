"""Shared pieces of the recall tasks (Diffuse MQAR, MQAR, passkey): an example type and a base class."""

from __future__ import annotations

from dataclasses import dataclass

from sessa.tasks.base import IGNORE_INDEX, SyntheticTask, to_example
from sessa.utils.checks import check_split


@dataclass
class RecallExample:
    """A generated recall example: ids, the scored positions, and per-query lags (for accuracy vs lag)."""

    ids: list[int]
    answer_positions: list[int]  # indices into ids of the scored (value) tokens
    lags: list[int]  # one per query: query key position - source key position

    def labels(self) -> list[int]:
        lab = [IGNORE_INDEX] * len(self.ids)
        for p in self.answer_positions:
            lab[p] = self.ids[p]
        return lab


class RecallTask(SyntheticTask):
    """A task whose examples come from `generate(split, index)` and are scored at the answer positions.

    Subclasses set `sizes` ({split: n}) and define `generate`, `token_name`, `max_seq_len` and `longest_lag`.
    The test split may reach longer lags than training (length extrapolation); `max_seq_len("test")` then
    says how long a model's max_seq_len must be, and `longest_lag("train")` where extrapolation starts.
    """

    sizes: dict[str, int]

    def generate(self, split: str, index: int) -> RecallExample:
        raise NotImplementedError

    def token_name(self, i: int) -> str:
        """Printable name of token id i (for the TSV files)."""
        raise NotImplementedError

    def max_seq_len(self, split: str) -> int:
        """Upper bound on the length (ids) of any example of `split`."""
        raise NotImplementedError

    def longest_lag(self, split: str) -> int:
        """Upper bound on the lag (as in RecallExample.lags) of any query of `split`."""
        raise NotImplementedError

    def split_size(self, split: str) -> int:
        return self.sizes[check_split(split)]

    def example(self, split: str, index: int):
        ex = self.generate(split, index)
        return to_example(ex.ids, ex.labels())

    def text_example(self, split: str, index: int) -> tuple[str, str]:
        """Text = token names with each scored token written '?'; Answer = the scored tokens in order."""
        ex = self.generate(split, index)
        ans = set(ex.answer_positions)
        text = " ".join("?" if i in ans else self.token_name(t) for i, t in enumerate(ex.ids))
        return text, " ".join(self.token_name(ex.ids[p]) for p in ex.answer_positions)
