"""SymbolSoup: 20-way long-context classification, drawn exactly as the authors' `datasets/SymbolSoup.py`.

Each example (Text) reads, with blocks and specials on separate lines and letters separated by spaces:

    <bos> / noise / <sep1> / styled / <sep2> / noise / <sep1> / styled / <sep2> / noise / <sep> <label>

Two styled blocks, one per style family, in random order; class k <-> (left style k // 5, right style k % 5).
- Alphabet a..p; motifs = every contiguous alphabet run of length 3, 4 and 5 (in that order).
- Styles: the 4 left styles come from one `random.Random(123)`, the 5 right styles from `random.Random(456)`;
  each style shuffles the alphabet with its family's RNG: primaries = first 4 letters (unigram weight 3),
  secondaries = next 4 (weight 2), the rest weight 1. Preferred bigrams: primary_i -> primary_(i+1 mod 4),
  primary -> itself, secondary -> itself, primary_i <-> secondary_i. Motif weight
  1 + 0.9 |motif & primaries| + 0.5 |motif & secondaries|.
- Styled block of L letters: until L letters, with prob 0.3 (when >= 3 remain) a motif drawn by weight among
  those that fit, else a Markov step with weight unigram(tok) * (1 + 3.0) on a preferred bigram prev -> tok,
  unigram(tok) otherwise (the block's first letter from the unigram); then each letter flips to another
  uniform letter with prob 0.03. A weighted draw walks its table in the authors' order (letters in the
  style's shuffled order, motifs in motif order) and takes the first item whose running sum reaches
  random() * total.
- Lengths: M letters ~ U[max(5, ceil((min - 13) / 2)), floor((max - 13) / 2)]; noise letters
  ~ U[max(3, floor(0.3 M)), max(that, floor(0.6 M))] clamped to [3, M - 2]; the left-style block gets
  U[1, S - 1] of the S styled letters; noise blocks: n0 ~ U[1, N - 2], n1 ~ U[1, N - n0 - 1], n2 the rest.
  Counting every character (spaces, newlines) and each special as one token, a Text has 2M + 13 tokens.
- One `random.Random(seed)` stream runs through train, then validation, then test; each split first shuffles
  its balanced class list (n / 20 of each class), then draws its examples in order. So the splits are made
  together, once, on first use (kept in memory), and a split depends on the sizes of the splits before it.

As a causal LM task the model reads Text followed by the class token and is scored only on that token
(with train_on_text, training examples are also scored on every letter).
tokenization="char" (default) keeps the authors' counting (2M + 14 ids with the class token);
"compact" keeps only letters and specials (M + 8 ids). With `data_dir` the examples are read from TSV files
instead (ours or the authors' own, see sessa.tasks.tsv).
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import NamedTuple

import torch

from sessa.tasks.base import IGNORE_INDEX, SyntheticTask
from sessa.utils.checks import SPLITS, check_bool, check_choice, check_int, check_split

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
MIN_TEXT = 2 * 5 + OVERHEAD  # the shortest Text (M = 5 letters)
AUTHORS_PREFIX = "symbol_soup"  # the authors' file-name prefix (their --task default)


def class_name(k: int) -> str:
    """Answer string of class k: 'L<left>_R<right>'."""
    return f"L{k // N_RIGHT}_R{k % N_RIGHT}"


CLASS_NAMES = tuple(class_name(k) for k in range(N_CLASSES))
AUTHORS_CLASS_NAMES = tuple(f"CLASS_{k}" for k in range(N_CLASSES))  # the authors' answer strings
TOKENS = SPECIALS + (" ", "\n") + tuple(ALPHABET) + CLASS_NAMES  # id -> token string
_TOKEN_ID = {t: i for i, t in enumerate(TOKENS)} | {n: CLASS0 + k for k, n in enumerate(AUTHORS_CLASS_NAMES)}
# multi-character tokens, longest first (CLASS_10 before CLASS_1), then any single character
_TOKEN_RE = re.compile("|".join(re.escape(t) for t in sorted((t for t in _TOKEN_ID if len(t) > 1),
                                                            key=len, reverse=True)) + r"|.", re.DOTALL)


class _Table(NamedTuple):
    """A weighted draw over `items`: running sums in walk order and the total the authors divide by."""

    items: tuple
    cum: tuple[float, ...]
    total: float


def _table(items, weights: list[float]) -> _Table:
    cum, s = [], 0.0
    for w in weights:
        s += w
        cum.append(s)
    return _Table(tuple(items), tuple(cum), sum(weights))  # builtin sum: the authors' total, bit for bit


def _draw(rng: random.Random, t: _Table):
    """First item whose running sum reaches random() * total (the last one if rounding leaves none)."""
    i = bisect_left(t.cum, rng.random() * t.total)
    return t.items[min(i, len(t.items) - 1)]


MOTIFS = [list(range(s, s + n)) for n in (3, 4, 5) for s in range(N_LETTERS - n + 1)]
LETTERS = list(range(N_LETTERS))
OTHER_LETTERS = [[x for x in LETTERS if x != t] for t in LETTERS]  # a flip draws among these, in order


class Style:
    """One style: unigram weights, preferred-bigram Markov chain and motif weights over letters 0..15."""

    def __init__(self, order: list[int]) -> None:
        self.order = list(order)  # the shuffled alphabet: every letter table is walked in this order
        self.primaries, self.secondaries = self.order[:4], self.order[4:8]
        self.unigram = [1.0] * N_LETTERS
        for t in self.primaries:
            self.unigram[t] = 3.0
        for t in self.secondaries:
            self.unigram[t] = 2.0
        self.preferred: set[tuple[int, int]] = set()
        for i, (p, s) in enumerate(zip(self.primaries, self.secondaries, strict=True)):
            self.preferred |= {(p, self.primaries[(i + 1) % 4]), (p, p), (s, s), (p, s), (s, p)}
        self.first = _table(self.order, [self.unigram[t] for t in self.order])
        self.step = [_table(self.order, [self.unigram[t] * (1.0 + BIGRAM_BONUS) if (prev, t) in self.preferred
                                         else self.unigram[t] for t in self.order])
                     for prev in range(N_LETTERS)]
        prim, sec = set(self.primaries), set(self.secondaries)
        weight = [1.0 + 0.9 * len(prim & set(m)) + 0.5 * len(sec & set(m)) for m in MOTIFS]
        # motifs that fit in r remaining letters (r = 3, 4, >= 5), in motif order
        self.motifs = {r: _table([m for m in MOTIFS if len(m) <= r],
                                 [w for m, w in zip(MOTIFS, weight, strict=True) if len(m) <= r]) for r in (3, 4, 5)}

    def block(self, rng: random.Random, length: int) -> list[int]:
        """A styled block of `length` letters: motifs (prob 0.3) or Markov steps, then 3% flip noise."""
        out: list[int] = []
        while len(out) < length:
            remaining = length - len(out)
            if remaining >= 3 and rng.random() < MOTIF_PROB:
                out.extend(_draw(rng, self.motifs[min(remaining, 5)]))
            else:
                out.append(_draw(rng, self.step[out[-1]] if out else self.first))
        for i, t in enumerate(out):
            if rng.random() < FLIP_PROB:
                out[i] = rng.choice(OTHER_LETTERS[t])
        return out


def _family(seed: int, n: int) -> list[Style]:
    """n styles from one RNG seeded `seed`, each shuffling the alphabet in turn."""
    rng = random.Random(seed)
    styles = []
    for _ in range(n):
        order = list(LETTERS)
        rng.shuffle(order)
        styles.append(Style(order))
    return styles


LEFT_STYLES = _family(LEFT_SEED, N_LEFT)
RIGHT_STYLES = _family(RIGHT_SEED, N_RIGHT)


@dataclass(frozen=True)
class SoupExample:
    """One generated example: its class and five letter blocks (noise, styled, noise, styled, noise)."""

    label: int
    blocks: tuple[bytes, ...]
    left_first: bool | None  # None when read from a file (the Text does not say which block is left)

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


def draw_example(rng: random.Random, label: int, m_lo: int, m_hi: int) -> SoupExample:
    """One example of class `label`, consuming `rng` exactly as the authors' generator does."""
    M = rng.randint(m_lo, m_hi)
    lo = max(3, int(0.3 * M))
    n_noise = min(rng.randint(lo, max(lo, int(0.6 * M))), M - 2)  # M >= 5, so M - 2 >= 3
    n_styled = M - n_noise
    n_left = rng.randint(1, n_styled - 1)
    n0 = rng.randint(1, n_noise - 2)
    n1 = rng.randint(1, n_noise - n0 - 1)
    left = LEFT_STYLES[label // N_RIGHT].block(rng, n_left)
    right = RIGHT_STYLES[label % N_RIGHT].block(rng, n_styled - n_left)
    left_first = rng.random() < 0.5
    first, second = (left, right) if left_first else (right, left)
    noise = [bytes(rng.choice(LETTERS) for _ in range(n)) for n in (n0, n1, n_noise - n0 - n1)]
    return SoupExample(label, (noise[0], bytes(first), noise[1], bytes(second), noise[2]), left_first)


def draw_splits(sizes: dict[str, int], min_len: int, max_len: int, seed: int, *,
                progress: bool = False) -> dict[str, list[SoupExample]]:
    """Every split from one `random.Random(seed)` stream: train, then validation, then test; each split
    shuffles its balanced class list, then draws its examples in that order (as the authors' script)."""
    m_lo, m_hi = m_bounds(min_len, max_len)
    rng = random.Random(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(sizes.values()), desc="symbolsoup: drawing examples", unit="ex")
    out: dict[str, list[SoupExample]] = {}
    for split in SPLITS:
        labels = [k for k in range(N_CLASSES) for _ in range(sizes[split] // N_CLASSES)]
        rng.shuffle(labels)
        out[split] = []
        for k in labels:
            out[split].append(draw_example(rng, k, m_lo, m_hi))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


def m_bounds(min_len: int, max_len: int) -> tuple[int, int]:
    """Letters per Text, [max(5, ceil((min_len - 13) / 2)), floor((max_len - 13) / 2)]; ValueError if empty."""
    m_lo = max(5, math.ceil((min_len - OVERHEAD) / 2))
    m_hi = (max_len - OVERHEAD) // 2
    if m_lo > m_hi:
        raise ValueError(f"max_len must allow a Text of 2M + 13 tokens with M >= max(5, ceil((min_len - 13) / 2)) "
                         f"letters; [min_len, max_len] = [{min_len}, {max_len}] holds no such length")
    return m_lo, m_hi


def encode(text: str, tokenization: str = "char") -> list[int]:
    """Tokenise a Text (optionally followed by its class name, 'L<l>_R<r>' or the authors' 'CLASS_k'):
    specials and class names one token each, every other character one token ("char", the authors'
    counting) or whitespace dropped ("compact")."""
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
    """Token ids back to text (padding dropped; classes as 'L<l>_R<r>')."""
    return "".join(TOKENS[int(i)] for i in ids if int(i) != PAD)


def answer_class(answer: str) -> int:
    """Class index of an answer string, ours ('L1_R3') or the authors' ('CLASS_8'); ValueError otherwise."""
    tok = _TOKEN_ID.get(answer)
    if tok is None or tok < CLASS0:
        raise ValueError(f"answer must be a class name (L0_R0..L3_R4 or CLASS_0..CLASS_19), got {answer!r}")
    return tok - CLASS0


_BLOCK = re.compile(r"[a-p]( [a-p])*")
_LAYOUT = ("<bos>", None, "<sep1>", None, "<sep2>", None, "<sep1>", None, "<sep2>", None, "<sep> <label>")


def parse_text(text: str, answer: str) -> SoupExample:
    """A SoupExample from a Text in the authors' layout and its answer (left_first is unknown: None);
    ValueError naming what is wrong otherwise."""
    lines = text.split("\n")
    if len(lines) != len(_LAYOUT) or any(w is not None and g != w for g, w in zip(lines, _LAYOUT, strict=True)):
        raise ValueError("text must follow the SymbolSoup layout <bos> / noise / <sep1> / styled / <sep2> / noise / "
                         "<sep1> / styled / <sep2> / noise / <sep> <label>, one per line")
    blocks = []
    for line in lines[1::2]:
        if not _BLOCK.fullmatch(line):
            raise ValueError(f"a block must be letters a..p separated by single spaces, got {line[:40]!r}")
        blocks.append(bytes(ord(c) - ord("a") for c in line[::2]))
    return SoupExample(answer_class(answer), tuple(blocks), None)


_DEFAULTS = {"n_train": 20000, "n_validation": 2000, "n_test": 2000, "min_len": 400, "max_len": 600, "seed": 0}


class SymbolSoup(SyntheticTask):
    """SymbolSoup task (see module docstring); options are validated and JSON-able.

    data_dir: read the splits from TSV files instead of generating them - our layout (train.tsv,
    validation.tsv, test.tsv, answers 'L<l>_R<r>') or the authors' own files as they are
    (<prefix>_train.tsv, <prefix>_val.tsv, <prefix>_test.tsv, answers 'CLASS_k', CRLF rows); the
    generation options must then be left at their defaults.

    train_on_text: training examples are also scored on every letter of the Text (next-letter prediction,
    an auxiliary loss that teaches the model the styles), not only on the class token; validation and test
    examples are scored on the class token alone, so accuracy still measures the classification."""

    name = "symbolsoup"
    vocab_size = VOCAB_SIZE
    pad_id = PAD
    # what `write_task_files(..., layout="authors")` needs: file prefix, answer strings in class order and
    # the label file's header (the authors write <prefix>_labels.tsv with columns Label, ClassId)
    authors_layout = {"prefix": AUTHORS_PREFIX, "answers": AUTHORS_CLASS_NAMES, "labels_header": ("Label", "ClassId")}

    def __init__(self, *, n_train: int = 20000, n_validation: int = 2000, n_test: int = 2000,
                 min_len: int = 400, max_len: int = 600, seed: int = 0, tokenization: str = "char",
                 data_dir: str | None = None, train_on_text: bool = False) -> None:
        check_choice("tokenization", tokenization, ("char", "compact"))
        self.tokenization = tokenization
        self.train_on_text = check_bool("train_on_text", train_on_text)
        # only when set, so runs and files recorded before the option existed keep their settings
        extra = {"train_on_text": True} if train_on_text else {}
        self._examples: dict[str, list[SoupExample]] = {}
        self.files: dict[str, str] | None = None
        if data_dir is not None:
            given = {"n_train": n_train, "n_validation": n_validation, "n_test": n_test, "min_len": min_len,
                     "max_len": max_len, "seed": seed}
            changed = sorted(k for k, v in given.items() if v != _DEFAULTS[k])
            if changed:
                raise ValueError(f"data_dir: the examples come from the files, so {changed} must be left unset")
            from sessa.tasks.tsv import find_split_files

            self.files = find_split_files(data_dir)
            self.options = {"data_dir": data_dir, "tokenization": tokenization, **extra}
            return
        for opt, n in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
            check_int(opt, n, lo=N_CLASSES)
            if n % N_CLASSES:
                raise ValueError(f"{opt} must be a multiple of {N_CLASSES} (balanced classes), got {n}")
        check_int("min_len", min_len, lo=0)
        check_int("max_len", max_len, lo=max(min_len, MIN_TEXT))
        check_int("seed", seed, lo=0)
        self.m_lo, self.m_hi = m_bounds(min_len, max_len)
        self.sizes = {"train": n_train, "validation": n_validation, "test": n_test}
        self.seed = seed
        self.options = {"n_train": n_train, "n_validation": n_validation, "n_test": n_test,
                        "min_len": min_len, "max_len": max_len, "seed": seed, "tokenization": tokenization, **extra}

    def prepare(self, *, progress: bool = False) -> None:
        """Draw every split now (otherwise done on first use); a no-op when drawn already or read from files."""
        if self.files is None and not self._examples:
            o = self.options
            self._examples = draw_splits(self.sizes, o["min_len"], o["max_len"], self.seed, progress=progress)

    def _split(self, split: str) -> list[SoupExample]:
        """The split's examples: drawn (all splits at once) or read from its file (checked once)."""
        if self.files is None:
            self.prepare()
        elif split not in self._examples:
            self._examples[split] = self._read(split)
        return self._examples[split]

    def _read(self, split: str) -> list[SoupExample]:
        from sessa.tasks.tsv import read_tsv

        assert self.files is not None
        path = self.files.get(split)
        if path is None:
            raise FileNotFoundError(f"data_dir {self.options['data_dir']!r} has no {split} file")
        out = []
        for i, (text, answer) in enumerate(read_tsv(path)):
            try:
                out.append(parse_text(text, answer))
            except ValueError as e:
                raise ValueError(f"{path}, row {i + 1}: {e}") from None
        if not out:
            raise ValueError(f"{path} holds no examples")
        return out

    def split_size(self, split: str) -> int:
        split = check_split(split)
        return self.sizes[split] if self.files is None else len(self._split(split))

    def labels(self, split: str) -> list[int]:
        """The split's classes in example order (balanced and shuffled when generated)."""
        return [ex.label for ex in self._split(check_split(split))]

    def generate(self, split: str, index: int) -> SoupExample:
        """Example `index` of `split` (left_first is None for examples read from files)."""
        split = check_split(split)
        check_int("index", index, lo=0, hi=self.split_size(split) - 1)
        return self._split(split)[index]

    def example(self, split: str, index: int) -> dict[str, torch.Tensor]:
        split = check_split(split)
        ids = self.generate(split, index).ids(self.tokenization)
        if self.train_on_text and split == "train":  # every letter too (train_on_text)
            labels = [t if LETTER0 <= t < CLASS0 else IGNORE_INDEX for t in ids]
        else:
            labels = [IGNORE_INDEX] * len(ids)
        labels[-1] = ids[-1]  # the class token is always scored (alone, except training with train_on_text)
        return {"input_ids": torch.tensor(ids, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long)}

    def answer_lags(self, split: str, index: int) -> dict[int, int]:
        """{position of the class token: its distance in tokens to the first letter of the earlier styled
        block}, the farthest evidence the answer needs (accuracy vs this distance: `sessa bench`)."""
        ids = self.generate(split, index).ids(self.tokenization)
        start = ids.index(SEP1) + (1 if self.tokenization == "compact" else 2)  # <sep1> (newline) letter
        return {len(ids) - 1: len(ids) - 1 - start}

    def text_example(self, split: str, index: int) -> tuple[str, str]:
        ex = self.generate(split, index)
        return ex.text(), CLASS_NAMES[ex.label]

    def label_vocab(self) -> list[str]:
        return list(CLASS_NAMES)
