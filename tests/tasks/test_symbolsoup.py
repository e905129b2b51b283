"""SymbolSoup generator: the authors' lengths, balance, determinism, styles, recoverable class, files."""

import math
import re
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sessa.models.lm import IGNORE_INDEX
from sessa.tasks import build_task
from sessa.tasks.symbolsoup import (
    CLASS0,
    LEFT_STYLES,
    LETTER0,
    MOTIFS,
    N_CLASSES,
    N_RIGHT,
    RIGHT_STYLES,
    SPECIALS,
    VOCAB_SIZE,
    Style,
    _family,
    decode,
    encode,
)
from sessa.tasks.tsv import read_tsv, write_task_files

# the authors' counting: every special one token, every other character (spaces, newlines too) one token
AUTHORS_TOKEN = re.compile("|".join(re.escape(s) for s in SPECIALS[1:]) + "|.", re.DOTALL)


def small(**kw):
    opts = dict(n_train=200, n_validation=40, n_test=40, min_len=120, max_len=260, seed=3)
    opts.update(kw)
    return build_task("symbolsoup", **opts)


@pytest.mark.parametrize("bounds", [(120, 260), (400, 600), (23, 23)])
def test_lengths_follow_the_authors_counting(bounds):
    lo, hi = bounds
    task = small(min_len=lo, max_len=hi)
    for i in range(40):
        ex = task.generate("train", i)
        text = ex.text()
        n_auth = len(AUTHORS_TOKEN.findall(text))
        assert n_auth == 2 * ex.n_letters + 13
        assert lo <= n_auth <= hi
        assert len(encode(text)) == n_auth
        ids = task.example("train", i)["input_ids"]
        assert ids.numel() == n_auth + 1  # + the class token
        assert len(ex.ids("compact")) == ex.n_letters + 8
        # noise share and the five non-empty blocks
        n_noise = len(ex.blocks[0]) + len(ex.blocks[2]) + len(ex.blocks[4])
        M = ex.n_letters
        assert all(len(b) >= 1 for b in ex.blocks)
        assert 3 <= n_noise <= M - 2
        assert max(3, math.floor(0.3 * M)) <= n_noise <= max(max(3, math.floor(0.3 * M)), math.floor(0.6 * M))


def test_layout_and_scoring():
    task = small()
    ex = task.generate("validation", 5)
    lines = ex.text().split("\n")
    assert lines[0] == "<bos>" and lines[-1] == "<sep> <label>"
    assert [lines[k] for k in (2, 4, 6, 8)] == ["<sep1>", "<sep2>", "<sep1>", "<sep2>"]
    assert all(re.fullmatch(r"[a-p]( [a-p])*", lines[k]) for k in (1, 3, 5, 7, 9))
    item = task.example("validation", 5)
    scored = (item["labels"] != IGNORE_INDEX).nonzero().flatten().tolist()
    assert scored == [item["input_ids"].numel() - 1]
    assert int(item["labels"][-1]) == CLASS0 + ex.label
    assert decode(item["input_ids"]).startswith("<bos>\n")
    for tokenization in ("char", "compact"):  # the class token is last, right after <label>, in both modes
        ids = small(tokenization=tokenization).example("validation", 5)["input_ids"].tolist()
        assert ids[-2:] == [5, CLASS0 + ex.label]  # 5 = <label>
    assert int(item["input_ids"].max()) < task.vocab_size == VOCAB_SIZE


@pytest.mark.parametrize("tokenization", ["char", "compact"])
def test_train_on_text_scores_every_letter_in_training_only(tokenization):
    plain, text = small(tokenization=tokenization), small(tokenization=tokenization, train_on_text=True)
    assert "train_on_text" not in plain.options and text.options["train_on_text"] is True
    item, base = text.example("train", 3), plain.example("train", 3)
    assert torch.equal(item["input_ids"], base["input_ids"])  # the same data, only the scoring differs
    ids, labels = item["input_ids"], item["labels"]
    letters = (ids >= LETTER0) & (ids < CLASS0)  # a..p
    scored = labels != IGNORE_INDEX
    assert torch.equal(scored[:-1], letters[:-1]) and bool(scored[-1])  # every letter, then the class token
    assert torch.equal(labels[scored], ids[scored])  # labels are aligned with input_ids (the loss shifts)
    assert int(letters.sum()) == sum(len(b) for b in text.generate("train", 3).blocks)
    for split in ("validation", "val", "test"):  # evaluation still scores the class token alone
        held = text.example(split, 3)["labels"]
        assert (held != IGNORE_INDEX).nonzero().flatten().tolist() == [held.numel() - 1]
    with pytest.raises(TypeError, match="train_on_text"):
        small(train_on_text=1)


def test_balanced_classes():
    task = small(n_train=400)
    for split in ("train", "validation", "test"):
        counts = Counter(task.labels(split))
        assert set(counts) == set(range(N_CLASSES))
        assert len(set(counts.values())) == 1
    ds = task.dataset("validation")
    tokens = Counter(int(ds[i]["labels"][-1]) - CLASS0 for i in range(len(ds)))
    assert tokens == Counter({k: 2 for k in range(N_CLASSES)})


def test_determinism_under_a_seed():
    a, b, c = small(), small(), small(seed=4)
    for i in (0, 7, 199):
        assert torch.equal(a.example("train", i)["input_ids"], b.example("train", i)["input_ids"])
    assert any(not torch.equal(a.example("train", i)["input_ids"], c.example("train", i)["input_ids"])
               for i in range(5))
    assert a.generate("train", 0).blocks != a.generate("test", 0).blocks
    # any index in any order gives the same example
    assert a.generate("test", 39).blocks == small().generate("test", 39).blocks


def test_one_stream_through_train_validation_test():
    """As the authors' script: train is drawn first, so it does not depend on the later splits' sizes, while
    validation and test do depend on the sizes before them."""
    a, b, c = small(), small(n_test=20), small(n_train=220)
    assert [a.generate("train", i) for i in range(200)] == [b.generate("train", i) for i in range(200)]
    assert [a.generate("validation", i) for i in range(40)] == [b.generate("validation", i) for i in range(40)]
    d = small(n_validation=60)
    assert [d.generate("train", i) for i in range(200)] == [a.generate("train", i) for i in range(200)]
    assert d.generate("test", 0) != a.generate("test", 0)
    assert [a.generate("train", i) for i in range(200)] != [c.generate("train", i) for i in range(200)]
    assert a.generate("validation", 0) != c.generate("validation", 0)


def test_noise_blocks_follow_the_authors_draws():
    """n0 ~ U[1, N-2], n1 ~ U[1, N-n0-1]: mean noise shares about 1/2, 1/4, 1/4 (not 1/3 each)."""
    task = small(n_train=2000, min_len=400, max_len=600)
    shares = [0.0, 0.0, 0.0]
    for i in range(2000):
        ex = task.generate("train", i)
        n = [len(ex.blocks[k]) for k in (0, 2, 4)]
        for j in range(3):
            shares[j] += n[j] / sum(n) / 2000
    assert shares[0] == pytest.approx(0.5, abs=0.02)
    assert shares[1] == pytest.approx(0.25, abs=0.02) and shares[2] == pytest.approx(0.25, abs=0.02)


def test_style_parameters():
    assert len(LEFT_STYLES) == 4 and len(RIGHT_STYLES) == 5
    assert len(MOTIFS) == 14 + 13 + 12
    for s in LEFT_STYLES + RIGHT_STYLES:
        assert sorted(s.unigram) == [1.0] * 8 + [2.0] * 4 + [3.0] * 4
        assert sorted(s.primaries + s.secondaries + [t for t in range(16) if s.unigram[t] == 1.0]) == list(range(16))
        p0, s0 = s.primaries[0], s.secondaries[0]
        assert {(p0, s.primaries[1]), (p0, p0), (s0, s0), (p0, s0), (s0, p0)} <= s.preferred
        # every letter table is walked in the style's shuffled order, as the authors' dicts are
        assert s.first.items == tuple(s.order) and s.step[p0].items == tuple(s.order)
        assert s.first.total == sum(s.unigram) == 28.0
        # Markov weight: unigram * (1 + 3.0) on a preferred bigram, unigram otherwise
        w = [b - a for a, b in zip((0.0,) + s.step[p0].cum, s.step[p0].cum, strict=False)]
        assert w[0] == 3.0 * 4.0  # p0 -> p0, and p0 is the first letter of the walk
        assert [w[i] for i in range(16) if (p0, s.order[i]) not in s.preferred] == \
            [s.unigram[t] for t in s.order if (p0, t) not in s.preferred]
        # motif tables keep the motif order (3-, then 4-, then 5-letter runs) and fit the remaining letters
        assert [len(m) for m in s.motifs[3].items] == [3] * 14
        assert list(s.motifs[5].items) == MOTIFS
    # each family is rebuilt identically from its own seed (123 left, 456 right), and they differ
    assert [s.primaries for s in _family(123, 4)] == [s.primaries for s in LEFT_STYLES]
    assert [s.secondaries for s in _family(456, 5)] == [s.secondaries for s in RIGHT_STYLES]
    assert [s.primaries for s in LEFT_STYLES] != [s.primaries for s in RIGHT_STYLES[:4]]
    assert Style(list(range(16))).primaries == [0, 1, 2, 3]


def _bigram_accuracy(blocks: tuple[int, int]) -> float:
    """Fit one conditional bigram model per style on two blocks of the training examples (the styled
    blocks 1 and 3, or noise blocks 0 and 4), then classify test examples by the best (left, right) pair."""
    task = small(n_train=400, n_test=200, min_len=200, max_len=400)
    a, b = blocks
    counts = [[1.0] * 256 for _ in range(9)]  # 4 left styles, then 5 right styles
    for i in range(400):
        ex = task.generate("train", i)
        left, right = (ex.blocks[a], ex.blocks[b]) if ex.left_first else (ex.blocks[b], ex.blocks[a])
        for s, blk in ((ex.label // N_RIGHT, left), (4 + ex.label % N_RIGHT, right)):
            for x, y in zip(blk, blk[1:], strict=False):
                counts[s][16 * x + y] += 1
    logp = [[math.log(row[16 * x + y] / sum(row[16 * x:16 * x + 16])) for x in range(16) for y in range(16)]
            for row in counts]

    def ll(blk, s):
        return sum(logp[s][16 * x + y] for x, y in zip(blk, blk[1:], strict=False))

    hits = 0
    for i in range(200):
        ex = task.generate("test", i)
        A, B = ex.blocks[a], ex.blocks[b]
        scores = {l * 5 + r: max(ll(A, l) + ll(B, 4 + r), ll(B, l) + ll(A, 4 + r))
                  for l in range(4) for r in range(5)}
        hits += max(scores, key=scores.get) == ex.label
    return hits / 200


def test_class_is_recoverable_from_styled_blocks_only():
    chance = 1 / N_CLASSES
    assert _bigram_accuracy((1, 3)) > 6 * chance  # far above chance
    assert _bigram_accuracy((0, 4)) < 3 * chance  # the noise blocks carry no class signal


def test_tsv_round_trip(tmp_path):
    task = small(n_train=20, n_validation=20, n_test=20)
    written = write_task_files(task, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["train.tsv", "validation.tsv", "test.tsv", "labels.txt", "meta.json"])
    assert written["labels"].endswith("labels.txt")
    labels = (tmp_path / "labels.txt").read_text().splitlines()
    assert len(labels) == N_CLASSES == len(set(labels))
    rows = read_tsv(str(tmp_path / "test.tsv"))
    assert len(rows) == 20
    for i, (text, answer) in enumerate(rows):
        assert answer == labels[task.generate("test", i).label]
        assert encode(text + answer) == task.example("test", i)["input_ids"].tolist()
        assert len(encode(text, "compact")) + 1 == len(task.generate("test", i).ids("compact"))


def test_compact_tokenization():
    a, b = small(), small(tokenization="compact")
    ex = a.generate("train", 3)
    ids = b.example("train", 3)["input_ids"].tolist()
    assert ids == ex.ids("compact") and len(ids) == ex.n_letters + 8
    assert decode(ids) == re.sub(r"\s", "", ex.text()) + f"L{ex.label // 5}_R{ex.label % 5}"
    assert [t for t in a.example("train", 3)["input_ids"].tolist() if t not in (8, 9)] == ids


def test_collate_pads_right():
    task = small()
    batch = task.collate([task.example("train", i) for i in range(3)])
    n = [task.example("train", i)["input_ids"].numel() for i in range(3)]
    assert batch["input_ids"].shape == (3, max(n))
    for b in range(3):
        assert (batch["input_ids"][b, n[b]:] == task.pad_id).all()
        assert (batch["labels"][b, n[b]:] == IGNORE_INDEX).all()
        assert int((batch["labels"][b] != IGNORE_INDEX).sum()) == 1


@pytest.mark.parametrize(
    "bad, name",
    [({"n_train": 30}, "n_train"), ({"n_test": 0}, "n_test"), ({"min_len": -1}, "min_len"),
     ({"min_len": 300, "max_len": 200}, "max_len"), ({"tokenization": "bpe"}, "tokenization"),
     ({"seed": -1}, "seed"), ({"min_len": 24, "max_len": 24}, "max_len"), ({"min_len": 0, "max_len": 22}, "max_len")],
)
def test_bad_options_name_the_option(bad, name):
    with pytest.raises(ValueError, match=name):
        small(**bad)


def test_bad_split_index_and_types():
    task = small()
    with pytest.raises(ValueError, match="split"):
        task.dataset("dev2")
    with pytest.raises(ValueError, match="index"):
        task.generate("test", 40)
    with pytest.raises(TypeError, match="n_train"):
        small(n_train=200.0)
    with pytest.raises(TypeError, match="unknown option"):
        build_task("symbolsoup", n_trian=20)
    with pytest.raises(ValueError, match="task must be one of"):
        build_task("soup")
    with pytest.raises(ValueError, match="not a SymbolSoup token"):
        encode("<bos> z")


@settings(max_examples=25, deadline=None)
@given(lo=st.integers(0, 1500), span=st.integers(1, 1500), seed=st.integers(0, 2**31))
def test_lengths_in_bounds_for_any_valid_range(lo, span, seed):
    hi = max(lo + span, 23)
    task = build_task("symbolsoup", n_train=20, n_validation=20, n_test=20, min_len=lo, max_len=hi, seed=seed)
    for i in (0, 19):
        n = len(encode(task.generate("test", i).text()))
        assert max(lo, 23) <= n <= hi and (n - 13) % 2 == 0


@pytest.mark.parametrize("tokenization", ["char", "compact"])
def test_answer_lag_reaches_back_to_the_first_styled_letter(tokenization):
    from sessa.tasks.symbolsoup import LETTER0, SEP1, SymbolSoup

    task = SymbolSoup(n_train=20, n_validation=20, n_test=20, min_len=60, max_len=90, tokenization=tokenization)
    for i in range(5):
        ids = task.example("test", i)["input_ids"].tolist()
        ((pos, lag),) = task.answer_lags("test", i).items()
        assert pos == len(ids) - 1  # the class token, the only scored one
        first = pos - lag
        assert LETTER0 <= ids[first] < LETTER0 + 16 and SEP1 in ids[first - 2:first]
        assert SEP1 not in ids[:first - 2]  # the earlier styled block: after the first <sep1>


def test_train_on_text_reads_files_too(tmp_path):
    task = small(n_train=20, n_validation=20, n_test=20, train_on_text=True)
    write_task_files(task, str(tmp_path))
    read = build_task("symbolsoup", data_dir=str(tmp_path), train_on_text=True)
    assert read.options == {"data_dir": str(tmp_path), "tokenization": "char", "train_on_text": True}
    for split in ("train", "test"):
        assert all(torch.equal(read.example(split, i)[k], task.example(split, i)[k])
                   for i in range(20) for k in ("input_ids", "labels"))
