"""SymbolSoup: 20-way long-context classification, generated exactly as SESSA.md restates the authors' script.

Each example (Text) reads, with blocks and specials on separate lines and letters separated by spaces:

    <bos> / noise / <sep1> / styled / <sep2> / noise / <sep1> / styled / <sep2> / noise / <sep> <label>

Two styled blocks, one per style family, in random order; class k <-> (left style k // 5, right style k % 5).
- Alphabet a..p; motifs = every contiguous alphabet run of length 3, 4 and 5.
- Styles: the 4 left styles come from one `random.Random(123)`, the 5 right styles from `random.Random(456)`;
  each style shuffles the alphabet with its family's RNG: primaries = first 4 letters (unigram weight 3),
  secondaries = next 4 (weight 2), the rest weight 1. Preferred bigrams: primary_i -> primary_(i+1 mod 4),
  primary -> itself, secondary -> itself, primary_i <-> secondary_i. Motif weight
  1 + 0.9 |motif & primaries| + 0.5 |motif & secondaries|.
- Styled block of L letters: until L letters, with prob 0.3 (when >= 3 remain) a motif drawn by weight among
  those that fit, else a Markov step P(tok | prev) ~ unigram(tok) (1 + 3.0 [prev -> tok preferred]) (the
  block's first letter from the unigram); then each letter flips to another uniform letter with prob 0.03.
- Lengths: M letters ~ U[max(5, ceil((min - 13) / 2)), floor((max - 13) / 2)]; noise letters
  ~ U[max(3, floor(0.3 M)), max(that, floor(0.6 M))] clamped to [3, M - 2]; styled letters split uniformly
  over the two styled blocks (each >= 1), noise over three noise blocks (each >= 1, uniform composition).
  Counting every character (spaces, newlines) and each special as one token, a Text has 2M + 13 tokens.
- Splits are balanced (each class n / 20 times, shuffled per split) and example i of a split is generated
  from its own seed, so any index is produced lazily and identically everywhere.

As a causal LM task the model reads Text followed by the class token and is scored only on that token.
tokenization="char" (default) keeps the authors' counting (2M + 14 ids with the class token);
"compact" keeps only letters and specials (M + 8 ids).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

import torch

from sessa.tasks.base import IGNORE_INDEX, SyntheticTask, example_rng, split_rng
from sessa.utils.checks import check_choice, check_int, check_split

ALPHABET = "abcdefghijklmnop"
N_LETTERS = 16
N_LEFT, N_RIGHT = 4, 5
N_CLASSES = N_LEFT * N_RIGHT
LEFT_SEED, RIGHT_SEED = 123, 456
MOTIF_PROB = 0.3
BIGRAM_BONUS = 3.0
FLIP_PROB = 0.03
SPECIALS = ("<pad>", "<bos>", "<sep1>", "<sep2>", "<sep>", "<label>", "<eos>", "[MASK]")
PAD, BOS, SEP1, SEP2, SEP, LABEL, EOS, MASK = range(len(SPECIALS))
SPACE, NEWLINE = len(SPECIALS), len(SPECIALS) + 1
LETTER0 = NEWLINE + 1  # id of "a"
CLASS0 = LETTER0 + N_LETTERS  # id of class 0's token
VOCAB_SIZE = CLASS0 + N_CLASSES
OVERHEAD = 13  # 2M + 13 tokens per Text under the authors' counting


def class_name(k: int) -> str:
    """Answer string of class k: 'L<left>_R<right>'."""
    return f"L{k // N_RIGHT}_R{k % N_RIGHT}"


CLASS_NAMES = tuple(class_name(k) for k in range(N_CLASSES))
TOKENS = SPECIALS + (" ", "\n") + tuple(ALPHABET) + CLASS_NAMES  # id -> token string
_TOKEN_ID = {t: i for i, t in enumerate(TOKENS)}
# multi-character tokens first, then any single character (unknown ones are reported by encode)
_TOKEN_RE = re.compile("|".join(re.escape(t) for t in TOKENS if len(t) > 1) + r"|.", re.DOTALL)


class Style:
    """One style: unigram weights, preferred-bigram Markov chain and motif weights over letters 0..15."""

    def __init__(self, order: list[int]) -> None:
        self.primaries, self.secondaries = order[:4], order[4:8]
        self.unigram = [1.0] * N_LETTERS
        for t in self.primaries:
            self.unigram[t] = 3.0
        for t in self.secondaries:
            self.unigram[t] = 2.0
        self.preferred: set[tuple[int, int]] = set()
        for i, (p, s) in enumerate(zip(self.primaries, self.secondaries, strict=True)):
            self.preferred |= {(p, self.primaries[(i + 1) % 4]), (p, p), (s, s), (p, s), (s, p)}
        self.unigram_cum = list(accumulate(self.unigram))
        # P(tok | prev) ~ unigram(tok) * (1 + 3.0 [preferred]); cumulative weights for random.choices
        self.markov_cum = [
            list(accumulate(self.unigram[t] * (1.0 + BIGRAM_BONUS * ((prev, t) in self.preferred))
                            for t in range(N_LETTERS)))
            for prev in range(N_LETTERS)
        ]
        prim, sec = set(self.primaries), set(self.secondaries)
        # motifs that fit in r remaining letters (r = 3, 4, >= 5) and their cumulative weights
        self.motifs: dict[int, list[list[int]]] = {}
        self.motif_cum: dict[int, list[float]] = {}
        for r in (3, 4, 5):
            fit = [m for m in MOTIFS if len(m) <= r]
            self.motifs[r] = fit
            self.motif_cum[r] = list(accumulate(1 + 0.9 * len(prim & set(m)) + 0.5 * len(sec & set(m))
                                                for m in fit))

    def block(self, rng, length: int) -> list[int]:
        """A styled block of `length` letters: motifs (prob 0.3) or Markov steps, then 3% flip noise."""
        out: list[int] = []
        while len(out) < length:
            remaining = length - len(out)
            if remaining >= 3 and rng.random() < MOTIF_PROB:
                r = min(remaining, 5)
                out.extend(_draw(rng, self.motifs[r], self.motif_cum[r]))
            elif not out:
                out.append(_draw(rng, range(N_LETTERS), self.unigram_cum))
            else:
                out.append(_draw(rng, range(N_LETTERS), self.markov_cum[out[-1]]))
        for i, t in enumerate(out):
            if rng.random() < FLIP_PROB:
                new = rng.randrange(N_LETTERS - 1)  # uniform over the 15 other letters
                out[i] = new + (new >= t)
        return out


def _draw(rng, items, cum: list[float]):
    """One item drawn with the given cumulative weights (the rule random.choices uses)."""
    return items[bisect_right(cum, rng.random() * cum[-1], 0, len(cum) - 1)]


MOTIFS = [list(range(s, s + n)) for n in (3, 4, 5) for s in range(N_LETTERS - n + 1)]


def _family(seed: int, n: int) -> list[Style]:
    """n styles from one RNG seeded `seed`, each shuffling the alphabet in turn."""
    import random

    rng = random.Random(seed)
    styles = []
    for _ in range(n):
        order = list(range(N_LETTERS))
        rng.shuffle(order)
        styles.append(Style(order))
    return styles


LEFT_STYLES = _family(LEFT_SEED, N_LEFT)
RIGHT_STYLES = _family(RIGHT_SEED, N_RIGHT)


@dataclass
class SoupExample:
    """One generated example: its class and five letter blocks (noise, styled, noise, styled, noise)."""

    label: int
    blocks: list[list[int]]
    left_first: bool

    @property
    def n_letters(self) -> int:
        return sum(len(b) for b in self.blocks)

    def text(self) -> str:
        """The authors' Text: specials and blocks on separate lines, letters separated by single spaces."""
        lines = [" ".join(ALPHABET[t] for t in b) for b in self.blocks]
        parts = ["<bos>", lines[0], "<sep1>", lines[1], "<sep2>", lines[2], "<sep1>", lines[3], "<sep2>",
                 lines[4], "<sep> <label>"]
        return "\n".join(parts)

    def ids(self, tokenization: str = "char") -> list[int]:
        """Token ids of Text followed by the class token."""
        seps = (SEP1, SEP2, SEP1, SEP2)
        if tokenization == "compact":
            ids = [BOS]
            for i, b in enumerate(self.blocks):
                ids.extend(LETTER0 + t for t in b)
                ids.append(seps[i] if i < 4 else SEP)
            ids += [LABEL, CLASS0 + self.label]
            return ids
        ids = [BOS, NEWLINE]
        for i, b in enumerate(self.blocks):
            for j, t in enumerate(b):
                if j:
                    ids.append(SPACE)
                ids.append(LETTER0 + t)
            ids += [NEWLINE, seps[i], NEWLINE] if i < 4 else [NEWLINE, SEP, SPACE]
        ids += [LABEL, CLASS0 + self.label]
        return ids


def encode(text: str, tokenization: str = "char") -> list[int]:
    """Tokenise a Text (optionally followed by its class name): specials and class names one token each,
    every other character one token ("char", the authors' counting) or whitespace dropped ("compact")."""
    check_choice("tokenization", tokenization, ("char", "compact"))
    ids: list[int] = []
    for m in _TOKEN_RE.finditer(text):
        tok = m.group()
        if tok.isspace() and tokenization == "compact":
            continue
        if tok not in _TOKEN_ID:
            raise ValueError(f"text contains {tok!r}, which is not a SymbolSoup token")
        ids.append(_TOKEN_ID[tok])
    return ids


def decode(ids) -> str:
    """Token ids back to text (padding dropped)."""
    return "".join(TOKENS[int(i)] for i in ids if int(i) != PAD)


class SymbolSoup(SyntheticTask):
    """SymbolSoup task (see module docstring); options are validated and JSON-able."""

    name = "symbolsoup"
    vocab_size = VOCAB_SIZE
    pad_id = PAD

    def __init__(self, *, n_train: int = 20000, n_validation: int = 2000, n_test: int = 2000,
                 min_len: int = 400, max_len: int = 600, seed: int = 0, tokenization: str = "char") -> None:
        for opt, n in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
            check_int(opt, n, lo=N_CLASSES)
            if n % N_CLASSES:
                raise ValueError(f"{opt} must be a multiple of {N_CLASSES} (balanced classes), got {n}")
        check_int("min_len", min_len, lo=2 * 5 + OVERHEAD)  # at least 5 letters
        check_int("max_len", max_len, lo=min_len)
        check_int("seed", seed, lo=0)
        check_choice("tokenization", tokenization, ("char", "compact"))
        self.m_lo = max(5, math.ceil((min_len - OVERHEAD) / 2))
        self.m_hi = (max_len - OVERHEAD) // 2
        if self.m_lo > self.m_hi:
            raise ValueError(f"max_len must allow 2M + 13 tokens with M >= max(5, ceil((min_len - 13) / 2)); "
                             f"[min_len, max_len] = [{min_len}, {max_len}] holds no such length")
        self.sizes = {"train": n_train, "validation": n_validation, "test": n_test}
        self.seed = seed
        self.tokenization = tokenization
        self.options = {"n_train": n_train, "n_validation": n_validation, "n_test": n_test,
                        "min_len": min_len, "max_len": max_len, "seed": seed, "tokenization": tokenization}
        self._labels: dict[str, list[int]] = {}

    def split_size(self, split: str) -> int:
        return self.sizes[check_split(split)]

    def labels(self, split: str) -> list[int]:
        """The split's balanced, shuffled class list (class of example i = labels(split)[i])."""
        split = check_split(split)
        if split not in self._labels:
            lab = [k for k in range(N_CLASSES) for _ in range(self.sizes[split] // N_CLASSES)]
            split_rng(self.name, self.seed, split, "labels").shuffle(lab)
            self._labels[split] = lab
        return self._labels[split]

    def generate(self, split: str, index: int) -> SoupExample:
        """Example `index` of `split`, from its own seed."""
        split = check_split(split)
        check_int("index", index, lo=0, hi=self.sizes[split] - 1)
        label = self.labels(split)[index]
        rng = example_rng(self.name, self.seed, split, index)
        M = rng.randint(self.m_lo, self.m_hi)
        lo = max(3, math.floor(0.3 * M))
        n_noise = min(max(rng.randint(lo, max(lo, math.floor(0.6 * M))), 3), M - 2)
        n_styled = M - n_noise
        s1 = rng.randint(1, n_styled - 1)
        a, b = sorted(rng.sample(range(1, n_noise), 2))  # uniform composition into 3 parts >= 1
        left_first = rng.random() < 0.5
        left, right = LEFT_STYLES[label // N_RIGHT], RIGHT_STYLES[label % N_RIGHT]
        first, second = (left, right) if left_first else (right, left)
        noise = [[rng.randrange(N_LETTERS) for _ in range(n)] for n in (a, b - a, n_noise - b)]
        blocks = [noise[0], first.block(rng, s1), noise[1], second.block(rng, n_styled - s1), noise[2]]
        return SoupExample(label, blocks, left_first)

    def example(self, split: str, index: int) -> dict[str, torch.Tensor]:
        ids = self.generate(split, index).ids(self.tokenization)
        labels = [IGNORE_INDEX] * len(ids)
        labels[-1] = ids[-1]  # scored only on the class token
        return {"input_ids": torch.tensor(ids, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long)}

    def text_example(self, split: str, index: int) -> tuple[str, str]:
        ex = self.generate(split, index)
        return ex.text(), CLASS_NAMES[ex.label]

    def label_vocab(self) -> list[str]:
        return list(CLASS_NAMES)
