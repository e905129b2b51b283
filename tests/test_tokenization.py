"""Tokenizers without downloads: byte ids = byte values, shared specials, locally trained BPE, save/load."""

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from sessa.tokenization import (
    BYTE_VOCAB_SIZE,
    EOS_ID,
    EOS_TOKEN,
    PAD_ID,
    PAD_TOKEN,
    byte_tokenizer,
    load_tokenizer,
    train_bpe,
)

TEXT = "héllo wörld \x00\x7f ✓ tabs\tand\nnewlines"
CORPUS = [
    "the cat sat on the mat. the dog sat on the log.",
    "a cat and a dog: the best of friends, the worst of enemies.",
    "héllo wörld, héllo again — the end.",
] * 10


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(CORPUS, 300)


def test_byte_ids_are_byte_values_and_round_trip():
    tok = byte_tokenizer()
    assert isinstance(tok, PreTrainedTokenizerFast)
    ids = tok(TEXT)["input_ids"]
    assert ids == list(TEXT.encode("utf-8"))
    assert tok.decode(ids) == TEXT
    # every byte value, including the ones that are not valid UTF-8 on their own, has its own id
    assert tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(list(range(256)))) == list(range(256))


def test_byte_specials_and_vocab():
    tok = byte_tokenizer()
    assert len(tok) == BYTE_VOCAB_SIZE == 258
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (EOS_ID, EOS_ID, PAD_ID) == (256, 256, 257)
    assert tok.convert_ids_to_tokens([256, 257]) == [EOS_TOKEN, PAD_TOKEN]
    # specials written in text are single tokens, never split into bytes
    assert tok(f"a{EOS_TOKEN}b{PAD_TOKEN}")["input_ids"] == [97, 256, 98, 257]
    assert tok.decode([104, 105, 256], skip_special_tokens=True) == "hi"


def test_byte_tokenizer_save_load(tmp_path):
    byte_tokenizer().save_pretrained(tmp_path)
    for tok in (load_tokenizer(str(tmp_path)), AutoTokenizer.from_pretrained(tmp_path)):
        assert tok(TEXT)["input_ids"] == list(TEXT.encode("utf-8"))
        assert (tok.eos_token_id, tok.pad_token_id, len(tok)) == (256, 257, 258)


def test_load_tokenizer_bytes_and_errors(tmp_path):
    assert load_tokenizer("bytes")("ab")["input_ids"] == [97, 98]
    with pytest.raises(ValueError, match="name_or_path"):
        load_tokenizer(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="tokenizer.json"):
        load_tokenizer(str(tmp_path))  # a folder, but no tokenizer in it
    with pytest.raises(TypeError, match="name_or_path"):
        load_tokenizer(3)


def test_bpe_layout_matches_bytes(bpe):
    byte = byte_tokenizer()
    # ids 0..257 mean the same thing in both tokenizers, merges start at 258
    assert bpe.convert_ids_to_tokens(list(range(258))) == byte.convert_ids_to_tokens(list(range(258)))
    assert (bpe.bos_token_id, bpe.eos_token_id, bpe.pad_token_id) == (256, 256, 257)
    assert BYTE_VOCAB_SIZE < len(bpe) <= 300


def test_bpe_compresses_and_round_trips(bpe):
    text = CORPUS[0] + " " + CORPUS[2]
    ids = bpe(text)["input_ids"]
    assert len(ids) < len(text.encode("utf-8"))  # the learned merges are used
    assert max(ids) >= BYTE_VOCAB_SIZE
    assert bpe.decode(ids) == text
    unseen = "zebra ✓ \x00"  # text outside the corpus falls back to bytes
    assert bpe.decode(bpe(unseen)["input_ids"]) == unseen


def test_bpe_deterministic_and_save_load(bpe, tmp_path):
    assert train_bpe(CORPUS, 300).get_vocab() == bpe.get_vocab()
    bpe.save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.get_vocab() == bpe.get_vocab()
    assert loaded(CORPUS[1])["input_ids"] == bpe(CORPUS[1])["input_ids"]


@pytest.mark.parametrize(
    ("texts", "vocab_size", "err", "match"),
    [
        (CORPUS, 257, ValueError, "vocab_size"),
        (CORPUS, 300.0, TypeError, "vocab_size"),
        (CORPUS, True, TypeError, "vocab_size"),
        ("one string", 300, TypeError, "texts"),
        ([], 300, ValueError, "texts"),
        (["ok", 3], 300, TypeError, r"texts\[1\]"),
    ],
)
def test_train_bpe_validates(texts, vocab_size, err, match):
    with pytest.raises(err, match=match):
        train_bpe(texts, vocab_size)
