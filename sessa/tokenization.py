"""Tokenizers that need no download: raw bytes (default) and a byte-level BPE trained locally.

Both share one layout so a model trained on bytes can read either: ids 0..255 are the raw bytes,
256 = "<|endoftext|>" (bos = eos), 257 = "<pad>", then (BPE only) the learned merges from 258 on.
Both are `transformers.PreTrainedTokenizerFast` objects, so `save_pretrained` writes the usual HF
tokenizer files and `load_tokenizer(folder)` / `AutoTokenizer.from_pretrained(folder)` read them back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from sessa.utils.checks import check_int

if TYPE_CHECKING:  # transformers is imported lazily so this module loads fast
    from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
N_BYTES = 256
EOS_ID = 256
PAD_ID = 257
BYTE_VOCAB_SIZE = 258

__all__ = [
    "byte_tokenizer",
    "train_bpe",
    "load_tokenizer",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "EOS_ID",
    "PAD_ID",
    "BYTE_VOCAB_SIZE",
]


def _gpt2_byte_table() -> dict[int, str]:
    """GPT-2's bytes -> unicode rule (the one tokenizers' ByteLevel implements): printable bytes map to
    themselves, the rest to 256 + n in order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, n = {}, 0
    for b in range(N_BYTES):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(N_BYTES + n)
            n += 1
    return table


def _gpt2_byte_table_list() -> list[str]:
    """Byte b -> its ByteLevel stand-in character, checked against the library's alphabet."""
    table = _gpt2_byte_table()
    syms = [table[b] for b in range(N_BYTES)]
    if set(syms) != set(pre_tokenizers.ByteLevel.alphabet()):  # our id layout relies on this table
        raise RuntimeError("tokenizers' ByteLevel alphabet differs from the GPT-2 byte table")
    return syms


def _finish(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Add the two specials at 256/257 and wrap in a PreTrainedTokenizerFast."""
    from transformers import PreTrainedTokenizerFast

    # The specials are already in the BPE vocab at 256/257 (added tokens would go to the end of the
    # vocab, after the merges); registering them marks them special so text never splits them.
    tok.add_special_tokens([EOS_TOKEN, PAD_TOKEN])
    if tok.token_to_id(EOS_TOKEN) != EOS_ID or tok.token_to_id(PAD_TOKEN) != PAD_ID:
        raise RuntimeError("special tokens did not land at ids 256/257")  # guards the shared id layout
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=int(1e30),  # the layer has no positional limit; generation length is the caller's
    )


def _byte_level_bpe(vocab: dict[str, int], merges: list[tuple[str, str]], use_regex: bool) -> Tokenizer:
    """A BPE model over ByteLevel characters (no merges = one token per byte) plus the 2 specials."""
    vocab = {**vocab, EOS_TOKEN: EOS_ID, PAD_TOKEN: PAD_ID}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tok.decoder = decoders.ByteLevel()
    return tok


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Raw bytes: token id = byte value (0..255), 256 = "<|endoftext|>" (bos = eos), 257 = "<pad>"."""
    vocab = {ch: b for b, ch in enumerate(_gpt2_byte_table_list())}
    return _finish(_byte_level_bpe(vocab, [], use_regex=False))


def train_bpe(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE learned on `texts`: bytes at 0..255, specials at 256/257, merges from 258 to vocab_size.

    If the corpus runs out of pairs to merge, the vocabulary is smaller than `vocab_size`; use
    `len(tokenizer)` as the model's vocab_size.
    """
    check_int("vocab_size", vocab_size, lo=BYTE_VOCAB_SIZE)  # 256 bytes + 2 specials at least
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be an iterable of str (one document each), not a single str")
    docs = list(texts)
    if not docs:
        raise ValueError("texts is empty: need at least one document to train on")
    for i, d in enumerate(docs):
        if not isinstance(d, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(d).__name__}")

    byte_syms = _gpt2_byte_table_list()
    work = Tokenizer(models.BPE())
    work.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2,  # the 2 specials are added afterwards at 256/257
        initial_alphabet=byte_syms,
        special_tokens=[],
        show_progress=False,
    )
    work.train_from_iterator(docs, trainer=trainer)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(work.to_str())["model"]["merges"]]
    # Re-number: bytes by value, then the merged tokens in the order they were learned (= their old ids).
    old = work.get_vocab(with_added_tokens=False)
    vocab = {ch: b for b, ch in enumerate(byte_syms)}
    next_id = BYTE_VOCAB_SIZE
    for token, _ in sorted(old.items(), key=lambda kv: kv[1]):
        if token not in vocab:
            vocab[token] = next_id
            next_id += 1
    return _finish(_byte_level_bpe(vocab, merges, use_regex=True))


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """"bytes" -> byte_tokenizer(); otherwise a local folder written by `save_pretrained` (no download)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or path, got {type(name_or_path).__name__}")
    name = os.fspath(name_or_path)
    if name == "bytes":
        return byte_tokenizer()
    if not os.path.isfile(os.path.join(name, "tokenizer.json")):
        raise ValueError(f"name_or_path must be 'bytes' or a folder holding tokenizer.json (written by "
                         f"save_pretrained), got {name!r}")
    from transformers import PreTrainedTokenizerFast

    try:
        return PreTrainedTokenizerFast.from_pretrained(name, local_files_only=True)
    except Exception as e:  # tokenizers raises its own exception types for a corrupt file
        raise ValueError(f"{os.path.join(name, 'tokenizer.json')}: not a readable tokenizer ({e})") from None
