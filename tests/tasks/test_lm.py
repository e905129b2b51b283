"""Offline LM task: packing without silent truncation, deterministic splits, sources, tokenizers, errors."""

import pytest
import torch

from sessa.tasks import build_task
from sessa.tasks.corpus import fallback_documents, stdlib_documents
from sessa.tokenization import EOS_ID, PAD_ID


def stream(task, split):
    ds = task.dataset(split)
    return torch.cat([ds[i]["input_ids"] for i in range(len(ds))])


def test_packing_covers_every_token_in_order():
    task = build_task("lm", source="fallback", block_size=32)
    docs = "".join(t for _, t in fallback_documents())
    total = 0
    pieces = []
    for split in ("train", "validation", "test"):
        ds = task.dataset(split)
        sizes = [ds[i]["input_ids"].numel() for i in range(len(ds))]
        assert all(s == 32 for s in sizes[:-1]) and 2 <= sizes[-1] <= 32  # only the last block is short
        s = stream(task, split)
        st = task.stats[split]
        assert st["tokens"] == s.numel() + st["dropped_tokens"]
        assert st["dropped_tokens"] <= 1
        total += st["chars"]
        pieces.append(task.tokenizer.decode(s, skip_special_tokens=True))
        item = ds[0]
        assert torch.equal(item["input_ids"], item["labels"])  # labels aligned; the LM shifts
    assert total == len(docs)
    assert "".join(pieces) == docs[: len("".join(pieces))]
    assert task.vocab_size == 258 and task.pad_id == PAD_ID
    assert task.metric_names == ("loss", "perplexity", "top1", "top5")


def test_splits_are_disjoint_fractions_and_deterministic():
    a = build_task("lm", source="fallback", block_size=16, val_fraction=0.1, test_fraction=0.2)
    b = build_task("lm", source="fallback", block_size=16, val_fraction=0.1, test_fraction=0.2)
    chars = {s: a.stats[s]["chars"] for s in ("train", "validation", "test")}
    total = sum(chars.values())
    assert abs(chars["validation"] - 0.1 * total) <= 1 and abs(chars["test"] - 0.2 * total) <= 1
    for split in ("train", "validation", "test"):
        assert torch.equal(stream(a, split), stream(b, split))
    assert not torch.equal(stream(a, "validation")[:16], stream(a, "test")[:16])


def test_drop_remainder_and_collate():
    keep = build_task("lm", source="fallback", block_size=50)
    drop = build_task("lm", source="fallback", block_size=50, drop_remainder=True)
    for split in ("train", "test"):
        rem = keep.stats[split]["tokens"] % 50
        assert drop.stats[split]["dropped_tokens"] == rem
        assert len(keep.dataset(split)) == len(drop.dataset(split)) + (rem >= 2)
    ds = keep.dataset("test")
    batch = keep.collate([ds[len(ds) - 1], ds[0]])
    n = ds[len(ds) - 1]["input_ids"].numel()
    assert batch["input_ids"].shape == (2, 50)
    assert (batch["input_ids"][0, n:] == PAD_ID).all() and (batch["labels"][0, n:] == -100).all()


def test_local_folder_source_and_documents_end_with_eos(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("alpha " * 40)
    (tmp_path / "b" / "c.md").write_text("gamma " * 40)
    (tmp_path / "skip.bin").write_text("ignored")
    task = build_task("lm", source=str(tmp_path), block_size=8, val_fraction=0.1, test_fraction=0.1)
    ids = torch.cat([stream(task, s) for s in ("train", "validation", "test")]).tolist()
    assert ids.count(EOS_ID) >= 2
    text = task.tokenizer.decode(ids, skip_special_tokens=True)
    assert text.startswith("alpha") and "gamma" in text and "ignored" not in text
    single = build_task("lm", source=str(tmp_path / "a.txt"), block_size=8)
    assert single.stats["train"]["chars"] + single.stats["validation"]["chars"] + single.stats["test"]["chars"] == 240


def test_bpe_tokenizer_trained_on_train_split():
    task = build_task("lm", source="fallback", tokenizer="bpe:300", block_size=16)
    assert 258 < task.vocab_size <= 300
    bytes_task = build_task("lm", source="fallback", block_size=16)
    assert task.stats["train"]["tokens"] < bytes_task.stats["train"]["tokens"]  # merges compress
    ds = task.dataset("validation")
    assert int(ds[0]["input_ids"].max()) < task.vocab_size


def test_stdlib_corpus_is_offline_and_deterministic():
    docs = stdlib_documents()
    names = [n for n, _ in docs]
    assert names == sorted(names) and all(n.endswith(".py") and not n.startswith("_") for n in names)
    assert sum(len(t) for _, t in docs) > 100_000
    task = build_task("lm", block_size=128, max_chars=60_000)
    assert task.options["source"] == "stdlib"
    assert sum(task.stats[s]["chars"] for s in ("train", "validation", "test")) == 60_000
    again = build_task("lm", block_size=128, max_chars=60_000)
    assert torch.equal(stream(task, "test"), stream(again, "test"))


@pytest.mark.parametrize(
    "bad, exc, name",
    [({"block_size": 1}, ValueError, "block_size"), ({"val_fraction": 0.7}, ValueError, "val_fraction"),
     ({"test_fraction": 0.0}, ValueError, "test_fraction"), ({"max_chars": 0}, ValueError, "max_chars"),
     ({"val_fraction": 0.0001}, ValueError, "val_fraction"), ({"tokenizer": "bpe:x"}, ValueError, "tokenizer"),
     ({"tokenizer": "/no/such/dir"}, ValueError, "tokenizer"), ({"drop_remainder": 1}, TypeError, "drop_remainder"),
     ({"source": ""}, TypeError, "source")],
)
def test_bad_options(bad, exc, name):
    opts = {"source": "fallback", **bad}
    with pytest.raises(exc, match=name):
        build_task("lm", **opts)


def test_missing_path_and_missing_datasets(tmp_path):
    with pytest.raises(FileNotFoundError, match="source"):
        build_task("lm", source=str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="source"):
        build_task("lm", source=str(tmp_path))  # a folder without text files
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="datasets"):
            build_task("lm", source="hf:SimpleStories/SimpleStories")
