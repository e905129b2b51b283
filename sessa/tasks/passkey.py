"""Passkey (needle) retrieval at a chosen distance: a standard long-range probe.

    <bos> filler (prefix) <key> d_1 ... d_K filler (distance tokens) <query> d_1 ... d_K

A random K-digit passkey is hidden after a random-length prefix of filler (0..max_prefix tokens); after
exactly `distance` filler tokens the <query> marker asks for it, and only the K digits after <query> are
scored (token accuracy). `distance` may be one int or a list: example i then uses distance[i % len], so
every distance is covered equally (accuracy vs distance). Filler tokens are uniform over filler_vocab
symbols. Token ids: 0 <pad>, 1 <bos>, 2 <key>, 3 <query>, 4..13 digits 0-9, then filler f0...
Defaults: distance 128, 5 digits, prefix up to 16, 16 filler symbols.
"""

from __future__ import annotations

from sessa.tasks.base import example_rng
from sessa.tasks.recall import RecallExample, RecallTask
from sessa.utils.checks import check_int, check_split

PAD, BOS, KEY, QUERY = 0, 1, 2, 3
DIGIT0 = 4
FILLER0 = DIGIT0 + 10


class Passkey(RecallTask):
    """Needle retrieval with the query `distance` filler tokens after the needle."""

    name = "passkey"
    pad_id = PAD

    def __init__(self, *, n_train: int = 20000, n_validation: int = 500, n_test: int = 500,
                 distance: int | list[int] = 128, passkey_len: int = 5, max_prefix: int = 16,
                 filler_vocab: int = 16, seed: int = 0) -> None:
        for opt, n in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
            check_int(opt, n, lo=1)
        distances = list(distance) if isinstance(distance, (list, tuple)) else [distance]
        if not distances:
            raise ValueError("distance must be an int >= 0 or a non-empty list of them, got []")
        for d in distances:
            check_int("distance", d, lo=0)
        check_int("passkey_len", passkey_len, lo=1)
        check_int("max_prefix", max_prefix, lo=0)
        check_int("filler_vocab", filler_vocab, lo=1)
        check_int("seed", seed, lo=0)
        self.sizes = {"train": n_train, "validation": n_validation, "test": n_test}
        self.distances, self.K, self.max_prefix = distances, passkey_len, max_prefix
        self.filler_vocab, self.seed = filler_vocab, seed
        self.vocab_size = FILLER0 + filler_vocab
        self.options = {"n_train": n_train, "n_validation": n_validation, "n_test": n_test,
                        "distance": distance if isinstance(distance, int) else distances,
                        "passkey_len": passkey_len, "max_prefix": max_prefix, "filler_vocab": filler_vocab,
                        "seed": seed}


    def generate(self, split: str, index: int) -> RecallExample:
        """Example `index` of `split`; its lag (query marker - needle marker) is distance + K + 1."""
        split = check_split(split)
        check_int("index", index, lo=0, hi=self.sizes[split] - 1)
        rng = example_rng(self.name, self.seed, split, index)
        distance = self.distances[index % len(self.distances)]
        digits = [DIGIT0 + rng.randrange(10) for _ in range(self.K)]

        def filler(n: int) -> list[int]:
            return [FILLER0 + rng.randrange(self.filler_vocab) for _ in range(n)]

        ids = [BOS] + filler(rng.randint(0, self.max_prefix)) + [KEY] + digits
        key_pos = len(ids) - self.K - 1
        ids += filler(distance) + [QUERY]
        answers = list(range(len(ids), len(ids) + self.K))
        ids += digits
        return RecallExample(ids, answers, [answers[0] - 1 - key_pos])


    def token_name(self, i: int) -> str:
        """Printable name of token id i."""
        if i < DIGIT0:
            return ("<pad>", "<bos>", "<key>", "<query>")[i]
        if i < FILLER0:
            return str(i - DIGIT0)
        return f"f{i - FILLER0}"

