"""Passkey (needle) retrieval at a chosen distance: a standard long-range probe.

    <bos> filler (prefix) <key> d_1 ... d_K filler (distance tokens) <query> d_1 ... d_K

A random K-digit passkey is hidden after a random-length prefix of filler (0..max_prefix tokens); after
exactly `distance` filler tokens the <query> marker asks for it, and only the K digits after <query> are
scored (token accuracy). `distance` may be one int or a list: example i then uses distance[i % len], so
every distance is covered equally (accuracy vs distance). `test_distance` (int or list, default: the same
as `distance`) replaces `distance` in the test split only, e.g. for length extrapolation beyond the trained
distances; validation keeps `distance` (it measures what was trained). Filler tokens are uniform over
filler_vocab symbols. An example's lag (query marker - needle marker) is distance + passkey_len + 1.
Token ids: 0 <pad>, 1 <bos>, 2 <key>, 3 <query>, 4..13 digits 0-9, then filler f0...
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
                 filler_vocab: int = 16, seed: int = 0, test_distance: int | list[int] | None = None) -> None:
        for opt, n in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
            check_int(opt, n, lo=1)
        distances = _distance_list("distance", distance)
        test_distances = distances if test_distance is None else _distance_list("test_distance", test_distance)
        check_int("passkey_len", passkey_len, lo=1)
        check_int("max_prefix", max_prefix, lo=0)
        check_int("filler_vocab", filler_vocab, lo=1)
        check_int("seed", seed, lo=0)
        self.sizes = {"train": n_train, "validation": n_validation, "test": n_test}
        self.distances, self.test_distances = distances, test_distances
        self.K, self.max_prefix = passkey_len, max_prefix
        self.filler_vocab, self.seed = filler_vocab, seed
        self.vocab_size = FILLER0 + filler_vocab
        self.options = {"n_train": n_train, "n_validation": n_validation, "n_test": n_test,
                        "distance": distance if isinstance(distance, int) else distances,
                        "passkey_len": passkey_len, "max_prefix": max_prefix, "filler_vocab": filler_vocab,
                        "seed": seed,
                        "test_distance": test_distance if test_distance is None or isinstance(test_distance, int)
                        else test_distances}

    def split_distances(self, split: str) -> list[int]:
        """The needle-query distances of `split`: example i uses split_distances(split)[i % len]."""
        return self.test_distances if check_split(split) == "test" else self.distances

    def max_seq_len(self, split: str) -> int:
        """Longest possible example of `split` (ids): <bos>, prefix, <key>, digits, filler, <query>, digits."""
        return 3 + self.max_prefix + 2 * self.K + max(self.split_distances(split))

    def longest_lag(self, split: str) -> int:
        """Longest lag of `split` (every example's lag is its distance + passkey_len + 1)."""
        return max(self.split_distances(split)) + self.K + 1

    def generate(self, split: str, index: int) -> RecallExample:
        """Example `index` of `split`; its lag (query marker - needle marker) is distance + K + 1."""
        split = check_split(split)
        check_int("index", index, lo=0, hi=self.sizes[split] - 1)
        rng = example_rng(self.name, self.seed, split, index)
        distances = self.split_distances(split)
        distance = distances[index % len(distances)]
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


def _distance_list(name: str, value: object) -> list[int]:
    """`value` (an int >= 0, or a non-empty list or tuple of them) as a list; errors name the option."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"{name} must be an int >= 0 or a non-empty list of them, got {value!r}")
    for d in values:
        check_int(name, d, lo=0)
    return values  # type: ignore[return-value]
