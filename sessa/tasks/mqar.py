"""MQAR: plain multi-query associative recall (Zoology, Arora et al. 2024), a standard recall probe.

    <bos> k_1 v_1 ... k_P v_P | filler ... k_a v_a ... filler ... k_b v_b ... (seq_len tokens in total)

P single-token keys (distinct, from key_vocab tokens) with single-token values (value_vocab tokens) come
first; the rest of the sequence is filler in which each of num_queries distinct keys reappears, at a
uniformly random slot, followed by its value. Only those query values are scored (token accuracy).
A query's lag is (its key's position) - (the key's position in the memory), from 2 up to seq_len - 3.
`test_seq_len` (default: seq_len) sets the length of the test split alone, so test lags can reach beyond
the trained ones (length extrapolation); validation keeps seq_len (it measures what was trained).
Token ids: 0 <pad>, 1 <bos>, 2 <filler>, then keys k0.., then values v0...
Defaults: seq_len 128, 8 pairs, all 8 queried, 64 key and 64 value tokens.
"""

from __future__ import annotations

from sessa.tasks.base import example_rng
from sessa.tasks.recall import RecallExample, RecallTask
from sessa.utils.checks import check_int, check_split

PAD, BOS, FILLER = 0, 1, 2
N_SPECIALS = 3


class MQAR(RecallTask):
    """Zoology-style MQAR with uniformly placed queries."""

    name = "mqar"
    pad_id = PAD

    def __init__(self, *, n_train: int = 20000, n_validation: int = 1000, n_test: int = 1000,
                 seq_len: int = 128, num_pairs: int = 8, num_queries: int | None = None,
                 key_vocab: int = 64, value_vocab: int = 64, seed: int = 0, test_seq_len: int | None = None) -> None:
        for opt, n in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
            check_int(opt, n, lo=1)
        check_int("num_pairs", num_pairs, lo=1)
        num_queries = num_pairs if num_queries is None else num_queries
        check_int("num_queries", num_queries, lo=1, hi=num_pairs)
        check_int("key_vocab", key_vocab, lo=num_pairs)  # keys are distinct
        check_int("value_vocab", value_vocab, lo=1)
        check_int("seq_len", seq_len, lo=1 + 2 * (num_pairs + num_queries))
        check_int("test_seq_len", test_seq_len, lo=1 + 2 * (num_pairs + num_queries), none_ok=True)
        check_int("seed", seed, lo=0)
        self.sizes = {"train": n_train, "validation": n_validation, "test": n_test}
        self.seq_len, self.P, self.Q = seq_len, num_pairs, num_queries
        self.seq_lens = {"train": seq_len, "validation": seq_len,
                         "test": seq_len if test_seq_len is None else test_seq_len}
        self.key_vocab, self.value_vocab, self.seed = key_vocab, value_vocab, seed
        self.vocab_size = N_SPECIALS + key_vocab + value_vocab
        self.options = {"n_train": n_train, "n_validation": n_validation, "n_test": n_test, "seq_len": seq_len,
                        "num_pairs": num_pairs, "num_queries": num_queries, "key_vocab": key_vocab,
                        "value_vocab": value_vocab, "seed": seed, "test_seq_len": test_seq_len}

    def max_seq_len(self, split: str) -> int:
        """Length (ids) of every example of `split`."""
        return self.seq_lens[check_split(split)]

    def longest_lag(self, split: str) -> int:
        """Longest lag of `split`: a query in the last slot of a key stored first (position 1)."""
        return self.seq_lens[check_split(split)] - 3

    def generate(self, split: str, index: int) -> RecallExample:
        """Example `index` of `split`, from its own seed."""
        split = check_split(split)
        check_int("index", index, lo=0, hi=self.sizes[split] - 1)
        rng = example_rng(self.name, self.seed, split, index)
        keys = [N_SPECIALS + k for k in rng.sample(range(self.key_vocab), self.P)]
        values = [N_SPECIALS + self.key_vocab + rng.randrange(self.value_vocab) for _ in range(self.P)]
        ids = [BOS]
        for k, v in zip(keys, values, strict=True):
            ids += [k, v]
        rest = self.seq_lens[split] - len(ids)
        # choose Q of the rest - Q possible starts so that the 2-token queries do not overlap:
        # sorted picks s_0 < s_1 < ... from range(rest - Q), shifted by their rank
        starts = [s + j for j, s in enumerate(sorted(rng.sample(range(rest - self.Q), self.Q)))]
        queried = rng.sample(range(self.P), self.Q)
        tail = [FILLER] * rest
        answers, lags = [], []
        for s, p in zip(starts, queried, strict=True):
            tail[s], tail[s + 1] = keys[p], values[p]
            answers.append(len(ids) + s + 1)
            lags.append(len(ids) + s - (1 + 2 * p))
        return RecallExample(ids + tail, answers, lags)


    def token_name(self, i: int) -> str:
        """Printable name of token id i."""
        if i < N_SPECIALS:
            return ("<pad>", "<bos>", "_")[i]
        if i < N_SPECIALS + self.key_vocab:
            return f"k{i - N_SPECIALS}"
        return f"v{i - N_SPECIALS - self.key_vocab}"

