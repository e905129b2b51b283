"""Offline causal language modelling: a local or embedded corpus, tokenised and packed into fixed blocks.

Pipeline (every step deterministic, no download):
1. Documents from `source` (sessa.tasks.corpus): "stdlib" (default: the Python standard library's
   docstrings), "fallback", a local file/folder, or "hf:NAME" (a cached `datasets` data set, e.g.
   SimpleStories, with its own train/validation/test splits when it has them).
2. Splits: a split the source does not provide is carved from the concatenated training text by
   characters: the first 1 - val_fraction - test_fraction goes to train, then validation, then test
   (a document on a boundary is cut there).
3. Tokenisation (sessa.tokenization): "bytes" (default, vocab 258), "bpe:N" (byte-level BPE with N ids
   trained on the train split only), or a saved tokenizer folder. Each document piece ends with
   <|endoftext|> (id 256).
4. Packing: each split's token stream is cut into blocks of block_size tokens; labels = input_ids (the
   LM shifts). The stream's remainder becomes one shorter last block (padded by collate, pad labels
   ignored) unless drop_remainder=True; a remainder of 1 token cannot be scored and is dropped, and
   `task.stats` records both counts. Nothing else is cut.
Metrics: loss, perplexity, top-1 and top-5 next-token accuracy.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

from sessa.tasks.base import LM_METRICS, Task
from sessa.tasks.corpus import DEFAULT_EXTENSIONS, hf_documents, load_documents
from sessa.utils.checks import SPLITS, check_bool, check_float, check_int, check_split

_HF_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}


def _carve(docs: list[str], fractions: list[float]) -> list[list[str]]:
    """Cut the documents' concatenation into consecutive parts holding the given fractions of characters."""
    total = sum(len(d) for d in docs)
    bounds, acc = [], 0.0
    for f in fractions[:-1]:
        acc += f
        bounds.append(round(acc * total))
    bounds.append(total)
    parts: list[list[str]] = [[] for _ in fractions]
    pos, k = 0, 0
    for d in docs:
        start = 0
        while start < len(d):
            while k < len(bounds) - 1 and pos + start >= bounds[k]:
                k += 1
            take = min(len(d) - start, bounds[k] - (pos + start)) if k < len(bounds) - 1 else len(d) - start
            parts[k].append(d[start:start + take])
            start += take
        pos += len(d)
    return parts


@functools.lru_cache(maxsize=4)
def _bpe(key: tuple, texts: tuple[str, ...], vocab_size: int):
    """Train (and memoise within the process) a BPE tokenizer on the training texts."""
    from sessa.tokenization import train_bpe

    return train_bpe(texts, vocab_size)


class LMTask(Task):
    """Causal LM task on an offline corpus (see module docstring)."""

    name = "lm"
    metric_names = LM_METRICS

    def __init__(self, *, source: str = "stdlib", tokenizer: str = "bytes", block_size: int = 256,
                 val_fraction: float = 0.05, test_fraction: float = 0.05, max_chars: int | None = None,
                 drop_remainder: bool = False, dataset_config: str | None = None, text_field: str = "text",
                 extensions: tuple[str, ...] | list[str] = DEFAULT_EXTENSIONS) -> None:
        if not isinstance(source, str) or not source:
            raise TypeError(f"source must be 'stdlib', 'fallback', 'hf:NAME' or a path, got {source!r}")
        if not isinstance(tokenizer, str) or not tokenizer:
            raise TypeError(f"tokenizer must be 'bytes', 'bpe:N' or a tokenizer folder, got {tokenizer!r}")
        check_int("block_size", block_size, lo=2)
        check_float("val_fraction", val_fraction, lo=0.0, hi=0.5)
        check_float("test_fraction", test_fraction, lo=0.0, hi=0.5)
        if max_chars is not None:
            check_int("max_chars", max_chars, lo=1)
        check_bool("drop_remainder", drop_remainder)
        extensions = tuple(extensions)
        self.options: dict[str, Any] = {
            "source": source, "tokenizer": tokenizer, "block_size": block_size, "val_fraction": val_fraction,
            "test_fraction": test_fraction, "max_chars": max_chars, "drop_remainder": drop_remainder,
            "dataset_config": dataset_config, "text_field": text_field, "extensions": list(extensions)}
        self.block_size = block_size
        texts = self._split_texts(source, val_fraction, test_fraction, max_chars, dataset_config, text_field,
                                  extensions)
        self.tokenizer = self._tokenizer(tokenizer, texts["train"])
        self.vocab_size = len(self.tokenizer)
        self.pad_id = int(self.tokenizer.pad_token_id)
        eos = int(self.tokenizer.eos_token_id)
        self.streams: dict[str, torch.Tensor] = {}
        self.stats: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            ids: list[int] = []
            enc = self.tokenizer(texts[split], add_special_tokens=False)["input_ids"] if texts[split] else []
            for piece in enc:
                ids += piece + [eos]
            self.streams[split] = torch.tensor(ids, dtype=torch.long)
            full, rem = divmod(len(ids), block_size)
            keep_rem = rem >= 2 and not drop_remainder
            self.stats[split] = {"tokens": len(ids), "chars": sum(len(t) for t in texts[split]),
                                 "blocks": full + keep_rem, "dropped_tokens": 0 if keep_rem else rem}
            if self.stats[split]["blocks"] == 0:
                raise ValueError(f"the {split} split holds {len(ids)} tokens, fewer than one block: lower "
                                 f"block_size (= {block_size}), raise val_fraction/test_fraction, or use a "
                                 "larger source")

    @staticmethod
    def _split_texts(source: str, val_fraction: float, test_fraction: float, max_chars: int | None,
                     dataset_config: str | None, text_field: str,
                     extensions: tuple[str, ...]) -> dict[str, list[str]]:
        """{split: document texts}; provided splits are kept, missing ones carved from train."""
        if source.startswith("hf:"):
            by_split = hf_documents(source[3:], dataset_config, text_field)
            given = {s: next((by_split[n] for n in names if n in by_split), None)
                     for s, names in _HF_SPLIT_NAMES.items()}
            if given["train"] is None:
                raise ValueError(f"source {source!r} has no 'train' split (splits: {sorted(by_split)})")
        else:
            given = {"train": load_documents(source, extensions), "validation": None, "test": None}
        texts = {s: ([t for _, t in d] if d is not None else None) for s, d in given.items()}
        if max_chars is not None:  # an explicit cap: whole documents up to max_chars, then a cut one
            for s, docs in texts.items():
                if docs is not None:
                    texts[s] = _carve(docs, [min(1.0, max_chars / max(1, sum(map(len, docs)))), 1.0])[0]
        missing = [s for s in ("validation", "test") if texts[s] is None]
        frac = {"validation": val_fraction, "test": test_fraction}
        if missing:
            for s in missing:
                if frac[s] <= 0:
                    raise ValueError(f"{'val_fraction' if s == 'validation' else 'test_fraction'} must be > 0: "
                                     f"the source has no {s} split to use instead")
            fr = [frac[s] for s in missing]
            parts = _carve(texts["train"], [1.0 - sum(fr), *fr])
            texts["train"] = parts[0]
            for s, p in zip(missing, parts[1:], strict=True):
                texts[s] = p
        return texts  # type: ignore[return-value]

    def _tokenizer(self, spec: str, train_texts: list[str]):
        """'bytes', 'bpe:N' (trained on train_texts) or a saved tokenizer folder."""
        from sessa.tokenization import load_tokenizer

        if spec.startswith("bpe:"):
            try:
                n = int(spec[4:])
            except ValueError:
                raise ValueError(f"tokenizer must be 'bpe:N' with an int N, got {spec!r}") from None
            key = (self.options["source"], self.options["max_chars"], self.options["val_fraction"],
                   self.options["test_fraction"], sum(map(len, train_texts)))
            return _bpe(key, tuple(train_texts), n)
        if spec != "bytes" and not os.path.isdir(spec):
            raise ValueError(f"tokenizer must be 'bytes', 'bpe:N' or an existing tokenizer folder, got {spec!r}")
        return load_tokenizer(spec)

    def split_size(self, split: str) -> int:
        return self.stats[check_split(split)]["blocks"]

    def example(self, split: str, index: int) -> dict[str, torch.Tensor]:
        """Block `index` of `split`: input_ids = labels = the stream's tokens [i * block, (i + 1) * block)."""
        split = check_split(split)
        check_int("index", index, lo=0, hi=self.split_size(split) - 1)
        ids = self.streams[split][index * self.block_size:(index + 1) * self.block_size].clone()
        return {"input_ids": ids, "labels": ids.clone()}
