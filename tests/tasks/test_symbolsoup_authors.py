"""SymbolSoup against the authors' generator: byte-identical files, and the authors' own files read as they are.

The digests below are of files written once by the authors' public `datasets/SymbolSoup.py` (run outside this
repository with the arguments shown); their code is not part of this repository.
"""

import hashlib

import pytest

from sessa.cli import main
from sessa.tasks import build_task
from sessa.tasks.symbolsoup import CLASS0, LABEL, SymbolSoup, answer_class, encode
from sessa.tasks.tsv import find_split_files, read_tsv, write_task_files

# their arguments -> our options, and (size, sha256) of each file their script wrote
AUTHORS_RUNS = [
    (  # --num_train_samples 240 --num_valid_samples 60 --num_test_samples 40 --min_tokens 23 --max_tokens 90
       # --seed 12345 (reaches the shortest Texts, M = 5 letters)
        dict(n_train=240, n_validation=60, n_test=40, min_len=23, max_len=90, seed=12345),
        {"symbol_soup_train.tsv": (24453, "b626fda8973149120b4d0576663ca04c92994c88cfa569834e5541190f84ecd6"),
         "symbol_soup_val.tsv": (6111, "1dcc350630fe44914d65dba56d98e388f39ed4b7c0d8b8b10f2c5352c954fbb3"),
         "symbol_soup_test.tsv": (4199, "f852db5ffe8e4b5eb9431a0fb7965807776752864f56796cb8111b8586a97b1e"),
         "symbol_soup_labels.tsv": (255, "49ce7f3870a128fb9c3cc72d5cfb209e4ba33a9d3b16f8c713fb6eabe5dd8763")},
    ),
    (  # --num_train_samples 100 --num_valid_samples 40 --num_test_samples 20 --min_tokens 400 --max_tokens 600
       # --seed 0 (the paper's default lengths)
        dict(n_train=100, n_validation=40, n_test=20, min_len=400, max_len=600, seed=0),
        {"symbol_soup_train.tsv": (55941, "98c5d36c686ce19113768b567fc0560ba7ab7c6bdddfe12ee1a0fe4f875a2c95"),
         "symbol_soup_val.tsv": (22435, "6d1138a1c61c444927fe6ffdde2b61b10111a75bb08b125766a448e9fa617b56"),
         "symbol_soup_test.tsv": (10811, "ed1dde8222ed3571d3fdb97e73b9668185d3fbd8d07fa266fff3ebde0e98abad"),
         "symbol_soup_labels.tsv": (255, "49ce7f3870a128fb9c3cc72d5cfb209e4ba33a9d3b16f8c713fb6eabe5dd8763")},
    ),
]


def digests(folder):
    return {p.name: (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in folder.iterdir()}


@pytest.mark.parametrize("options, expected", AUTHORS_RUNS)
def test_authors_layout_is_byte_identical_to_their_script(tmp_path, options, expected):
    written = write_task_files(build_task("symbolsoup", **options), str(tmp_path), layout="authors")
    assert sorted(written) == ["labels", "test", "train", "validation"]
    assert digests(tmp_path) == expected  # exactly their four files, nothing else (no meta.json, no temp files)


def test_cli_authors_layout(tmp_path):
    options, expected = AUTHORS_RUNS[0]
    out = tmp_path / "soup"
    rc = main(["data", "symbolsoup", "--out", str(out), "--layout", "authors", "--no-progress",
               "--n-train", "240", "--n-validation", "60", "--n-test", "40", "--min-len", "23", "--max-len", "90",
               "--seed", "12345"])
    assert rc == 0 and digests(out) == expected


def test_authors_layout_only_for_symbolsoup(tmp_path, capsys):
    with pytest.raises(ValueError, match="layout='authors' exists only for symbolsoup"):
        write_task_files(build_task("mqar", n_train=4, n_validation=2, n_test=2), str(tmp_path / "m"),
                         layout="authors")
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="layout"):
        write_task_files(build_task("symbolsoup", n_train=20, n_validation=20, n_test=20), str(tmp_path),
                         layout="theirs")
    assert main(["data", "passkey", "--out", str(tmp_path / "p"), "--layout", "authors", "--no-progress"]) == 2
    assert "symbolsoup" in capsys.readouterr().err


def test_sessa_layout_has_the_same_examples(tmp_path):
    """Our default layout: the same Texts, answers L<l>_R<r>, LF rows, plus labels.txt and meta.json."""
    options, _ = AUTHORS_RUNS[0]
    write_task_files(build_task("symbolsoup", **options), str(tmp_path / "ours"))
    write_task_files(build_task("symbolsoup", **options), str(tmp_path / "theirs"), layout="authors")
    for ours, theirs in (("train", "train"), ("validation", "val"), ("test", "test")):
        a = read_tsv(str(tmp_path / "ours" / f"{ours}.tsv"))
        b = read_tsv(str(tmp_path / "theirs" / f"symbol_soup_{theirs}.tsv"))
        assert [t for t, _ in a] == [t for t, _ in b]
        assert [answer_class(x) for _, x in a] == [answer_class(x) for _, x in b]
    raw = (tmp_path / "ours" / "train.tsv").read_bytes()
    assert b"\r" not in raw and (tmp_path / "theirs" / "symbol_soup_train.tsv").read_bytes().count(b"\r\n") == 241


def test_encode_reads_the_authors_answers():
    assert encode("CLASS_0") == [CLASS0] and encode("CLASS_19") == [CLASS0 + 19]
    assert encode("CLASS_13") == encode("L2_R3") and encode("<sep> <label>CLASS_10")[-1] == CLASS0 + 10
    assert [answer_class(a) for a in ("CLASS_7", "L1_R2", "CLASS_19", "L3_R4")] == [7, 7, 19, 19]
    for bad in ("CLASS_20", "class_1", "L4_R0", "<label>", "a", ""):
        with pytest.raises(ValueError, match="answer"):
            answer_class(bad)
    with pytest.raises(ValueError, match="not a SymbolSoup token"):
        encode("CLASS_20")


@pytest.mark.parametrize("layout", ["authors", "sessa"])
@pytest.mark.parametrize("tokenization", ["char", "compact"])
def test_task_reads_files_as_they_are(tmp_path, layout, tokenization):
    options, _ = AUTHORS_RUNS[0]
    generated = build_task("symbolsoup", tokenization=tokenization, **options)
    write_task_files(generated, str(tmp_path), layout=layout)
    task = build_task("symbolsoup", data_dir=str(tmp_path), tokenization=tokenization)
    assert task.options == {"data_dir": str(tmp_path), "tokenization": tokenization}
    for split, n in (("train", 240), ("validation", 60), ("test", 40)):
        assert task.split_size(split) == n
        for i in range(n):
            a, b = task.example(split, i), generated.example(split, i)
            assert a["input_ids"].tolist() == b["input_ids"].tolist()
            assert a["labels"].tolist() == b["labels"].tolist()
            assert task.text_example(split, i) == generated.text_example(split, i)
    ex, ref = task.generate("test", 5), generated.generate("test", 5)
    assert ex.blocks == ref.blocks and ex.label == ref.label and ex.left_first is None
    assert task.labels("train") == generated.labels("train")


def test_find_split_files_and_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        find_split_files(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no train.tsv"):
        find_split_files(str(tmp_path))
    (tmp_path / "my_soup_train.tsv").write_text("Text\tAnswer\r\n")
    (tmp_path / "my_soup_val.tsv").write_text("Text\tAnswer\r\n")
    assert find_split_files(str(tmp_path)) == {"train": str(tmp_path / "my_soup_train.tsv"),
                                               "validation": str(tmp_path / "my_soup_val.tsv")}
    task = SymbolSoup(data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no test file"):
        task.split_size("test")
    with pytest.raises(ValueError, match="holds no examples"):
        task.split_size("train")
    (tmp_path / "train.tsv").write_text("Text\tAnswer\n")
    with pytest.raises(ValueError, match="several data sets"):
        find_split_files(str(tmp_path))
    with pytest.raises(ValueError, match=r"\['min_len', 'seed'\] must be left unset"):
        SymbolSoup(data_dir=str(tmp_path), seed=1, min_len=40)


GOOD_TEXT = "<bos>\na\n<sep1>\nb c\n<sep2>\nd\n<sep1>\ne\n<sep2>\nf\n<sep> <label>"


@pytest.mark.parametrize("text, answer, match", [
    (GOOD_TEXT, "CLASS_21", "row 1: answer must be a class name"),
    (GOOD_TEXT, "class_1", "row 1: answer must be a class name"),
    (GOOD_TEXT.replace("b c", "b z"), "CLASS_1", "row 1: a block must be letters a..p"),
    (GOOD_TEXT.replace("b c", "b  c"), "CLASS_1", "row 1: a block must be letters a..p"),
    (GOOD_TEXT.replace("\nd\n", "\n\n"), "CLASS_1", "row 1: a block must be letters a..p"),
    (GOOD_TEXT[:-len(" <label>")], "CLASS_1", "row 1: text must follow the SymbolSoup layout"),
    ("<bos>\na b\n<sep> <label>", "CLASS_1", "row 1: text must follow the SymbolSoup layout"),
])
def test_bad_rows_name_the_file_and_row(tmp_path, text, answer, match):
    (tmp_path / "symbol_soup_test.tsv").write_text(f'Text\tAnswer\r\n"{text}"\t{answer}\r\n', newline="")
    task = SymbolSoup(data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="symbol_soup_test.tsv") as e:
        task.example("test", 0)
    assert match in str(e.value)


def test_a_hand_written_authors_row_is_read():
    """A row exactly as the authors' csv.writer writes it (quoted Text with LF inside, CRLF after the row)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/symbol_soup_val.tsv", "w", newline="") as f:
            f.write(f'Text\tAnswer\r\n"{GOOD_TEXT}"\tCLASS_8\r\n')
        task = SymbolSoup(data_dir=d)
        ids = task.example("validation", 0)["input_ids"].tolist()
        assert ids[-2:] == [LABEL, CLASS0 + 8] and len(ids) == 2 * 6 + 13 + 1
        assert task.text_example("validation", 0) == (GOOD_TEXT, "L1_R3")
