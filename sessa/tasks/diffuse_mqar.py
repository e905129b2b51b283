"""Diffuse MQAR: associative recall with multi-token keys, prefix-sharing distractors and controlled lags.

The paper's second long-context task (Diffuse MQAR, docs/tasks.md); exact sizes are not published, so they are options:

    <bos> | memory: P pairs (key: key_len tokens, value: value_len tokens) | <sep>
          | noise: distractor pairs, n tokens | <sep> | queries: Q pairs (key, value)

- Keys use a key vocabulary (key_vocab tokens); the P keys of an example have distinct prefixes (their
  first key_len - 1 tokens), so a key is identified only by reading its full length.
- Noise block: back-to-back distractor pairs whose key copies a real key's prefix with a different last
  token, followed by random values (the block is cut to exactly n tokens, so its last pair may be partial).
  A model matching only the prefix retrieves a distractor's value.
- Queries: Q distinct memory keys in random order, each followed by its value; only those value tokens
  are scored (metric: token accuracy over the answer tokens).
- Lag: for a query, lag = (position of the query's key) - (position of its key in memory). The noise
  length n is drawn uniformly among the values that put EVERY query's lag in [min_lag, max_lag] for
  train / validation, and in [min_lag, test_lag_factor * max_lag] for test (length extrapolation).

Defaults: P = 8 pairs, key_len = 3, value_len = 1, Q = 4 queries, 32 key and 32 value tokens,
lags 64..128 in training (sequences of about 100-180 tokens), up to 4x = 512 at test.
Token ids: 0 <pad>, 1 <bos>, 2 <sep>, then key tokens k0.., then value tokens v0...
"""

from __future__ import annotations

from sessa.tasks.base import example_rng
from sessa.tasks.recall import RecallExample, RecallTask
from sessa.utils.checks import check_int, check_split

PAD, BOS, SEP = 0, 1, 2
N_SPECIALS = 3


class DiffuseMQAR(RecallTask):
    """Seeded Diffuse MQAR generator (see module docstring for the layout and the lag rule)."""

    name = "diffuse_mqar"
    pad_id = PAD

    def __init__(self, *, n_train: int = 20000, n_validation: int = 1000, n_test: int = 1000,
                 num_pairs: int = 8, num_queries: int = 4, key_len: int = 3, value_len: int = 1,
                 key_vocab: int = 32, value_vocab: int = 32, min_lag: int = 64, max_lag: int = 128,
                 test_lag_factor: int = 4, seed: int = 0) -> None:
        for opt, n in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
            check_int(opt, n, lo=1)
        check_int("num_pairs", num_pairs, lo=1)
        check_int("num_queries", num_queries, lo=1, hi=num_pairs)
        check_int("key_len", key_len, lo=2)  # a prefix plus a suffix
        check_int("value_len", value_len, lo=1)
        check_int("key_vocab", key_vocab, lo=2)
        check_int("value_vocab", value_vocab, lo=2)
        check_int("seed", seed, lo=0)
        check_int("test_lag_factor", test_lag_factor, lo=1)
        if key_vocab ** (key_len - 1) < num_pairs:
            raise ValueError(f"key_vocab ** (key_len - 1) = {key_vocab ** (key_len - 1)} must be >= num_pairs "
                             f"= {num_pairs} (keys need distinct prefixes)")
        self.stride = key_len + value_len
        # lag_j = 2 + n + (P - p_j + j) * stride, with P - p_j >= 1 and j <= Q - 1
        self.base_lo = 2 + self.stride
        self.base_hi = 2 + (num_pairs + num_queries - 1) * self.stride
        check_int("min_lag", min_lag, lo=1)
        if max_lag < self.base_hi or max_lag - min_lag < self.base_hi - self.base_lo:
            raise ValueError(
                f"max_lag must be >= {self.base_hi} and max_lag - min_lag >= {self.base_hi - self.base_lo} so every "
                f"query's lag can be placed in [min_lag, max_lag] (num_pairs + num_queries pairs of "
                f"{self.stride} tokens), got min_lag = {min_lag}, max_lag = {max_lag}")
        self.sizes = {"train": n_train, "validation": n_validation, "test": n_test}
        self.P, self.Q, self.key_len, self.value_len = num_pairs, num_queries, key_len, value_len
        self.key_vocab, self.value_vocab = key_vocab, value_vocab
        self.lag_range = {"train": (min_lag, max_lag), "validation": (min_lag, max_lag),
                          "test": (min_lag, test_lag_factor * max_lag)}
        self.seed = seed
        self.vocab_size = N_SPECIALS + key_vocab + value_vocab
        self.options = {"n_train": n_train, "n_validation": n_validation, "n_test": n_test,
                        "num_pairs": num_pairs, "num_queries": num_queries, "key_len": key_len,
                        "value_len": value_len, "key_vocab": key_vocab, "value_vocab": value_vocab,
                        "min_lag": min_lag, "max_lag": max_lag, "test_lag_factor": test_lag_factor, "seed": seed}


    def max_seq_len(self, split: str) -> int:
        """Longest possible example of `split` (ids).

        Length = 3 + (P + Q) * stride + n with n <= lag_hi - max_j base_j, and max_j base_j >= 2 + Q * stride
        (the last query has j = Q - 1 and P - p >= 1); equality when the queries are the last Q memory pairs
        in order, so the bound is attained.
        """
        return 1 + self.P * self.stride + self.lag_range[check_split(split)][1]

    def longest_lag(self, split: str) -> int:
        """Longest lag of `split`: max_lag for train / validation, test_lag_factor * max_lag for test."""
        return self.lag_range[check_split(split)][1]

    def _key(self, rng) -> list[int]:
        return [N_SPECIALS + rng.randrange(self.key_vocab) for _ in range(self.key_len)]

    def _value(self, rng) -> list[int]:
        return [N_SPECIALS + self.key_vocab + rng.randrange(self.value_vocab) for _ in range(self.value_len)]

    def generate(self, split: str, index: int) -> RecallExample:
        """Example `index` of `split`, from its own seed."""
        split = check_split(split)
        check_int("index", index, lo=0, hi=self.sizes[split] - 1)
        rng = example_rng(self.name, self.seed, split, index)
        keys: list[list[int]] = []
        prefixes: set[tuple[int, ...]] = set()
        while len(keys) < self.P:  # distinct prefixes (rejection sampling; guaranteed feasible above)
            k = self._key(rng)
            if tuple(k[:-1]) not in prefixes:
                prefixes.add(tuple(k[:-1]))
                keys.append(k)
        values = [self._value(rng) for _ in range(self.P)]
        queried = rng.sample(range(self.P), self.Q)
        bases = [2 + (self.P - p + j) * self.stride for j, p in enumerate(queried)]
        lag_lo, lag_hi = self.lag_range[split]
        n = rng.randint(max(0, lag_lo - min(bases)), lag_hi - max(bases))
        noise: list[int] = []
        while len(noise) < n:
            src = keys[rng.randrange(self.P)]
            wrong = rng.randrange(self.key_vocab - 1)  # any last token but the source key's own
            last = N_SPECIALS + wrong + (N_SPECIALS + wrong >= src[-1])
            noise += src[:-1] + [last] + self._value(rng)
        ids = [BOS]
        for k, v in zip(keys, values, strict=True):
            ids += k + v
        ids += [SEP] + noise[:n] + [SEP]
        answers = []
        for p in queried:
            ids += keys[p]
            answers += range(len(ids), len(ids) + self.value_len)
            ids += values[p]
        return RecallExample(ids, answers, [b + n for b in bases])


    def token_name(self, i: int) -> str:
        """Printable name of token id i: specials, k<j> for key tokens, v<j> for value tokens."""
        if i < N_SPECIALS:
            return ("<pad>", "<bos>", "<sep>")[i]
        if i < N_SPECIALS + self.key_vocab:
            return f"k{i - N_SPECIALS}"
        return f"v{i - N_SPECIALS - self.key_vocab}"

