"""`sessa data`: writes the authors' TSV layout atomically and reports bad options as one-line errors."""
import json

import pytest

from sessa.cli import main
from sessa.tasks import build_task
from sessa.tasks.symbolsoup import encode
from sessa.tasks.tsv import read_tsv


def test_data_symbolsoup_writes_all_files(tmp_path, capsys):
    out = tmp_path / "soup"
    rc = main(["data", "symbolsoup", "--out", str(out), "--n-train", "40", "--n-validation", "20",
               "--n-test", "20", "--min-len", "60", "--max-len", "120", "--seed", "5", "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["train.tsv", "validation.tsv", "test.tsv", "labels.txt", "meta.json"])  # no temp files left
    meta = json.loads((out / "meta.json").read_text())
    assert meta["options"]["seed"] == 5 and meta["rows"] == {"train": 40, "validation": 20, "test": 20}
    rows = read_tsv(str(out / "train.tsv"))
    assert len(rows) == 40
    task = build_task("symbolsoup", **meta["options"])
    assert rows[7] == task.text_example("train", 7)
    assert all(60 <= len(encode(text)) <= 120 for text, _ in rows)
    assert "labels" in capsys.readouterr().out


def test_data_diffuse_mqar_with_set_and_splits(tmp_path):
    out = tmp_path / "dm"
    rc = main(["data", "diffuse_mqar", "--out", str(out), "--n-test", "3", "--splits", "test",
               "--set", "num_pairs=4", "--min-lag", "40", "--max-lag", "80", "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.tsv"]
    assert json.loads((out / "meta.json").read_text())["options"]["num_pairs"] == 4
    assert len(read_tsv(str(out / "test.tsv"))) == 3


def test_data_bad_option_is_a_one_line_error(tmp_path, capsys):
    rc = main(["data", "symbolsoup", "--out", str(tmp_path / "x"), "--n-train", "30", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "n_train" in err and "Traceback" not in err
    assert not (tmp_path / "x" / "train.tsv").exists()
    rc = main(["data", "mqar", "--out", str(tmp_path / "y"), "--min-len", "50", "--no-progress"])
    assert rc == 2 and "unknown option" in capsys.readouterr().err


def test_corrupt_or_truncated_tsv_names_the_file(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text('Text\tAnswer\n"a b\nc"\tL0_R1\n', encoding="utf-8")
    assert read_tsv(str(good)) == [("a b\nc", "L0_R1")]
    cases = {
        "header.tsv": b"Txt\tAnswer\nx\ty\n",
        "truncated.tsv": b'Text\tAnswer\nx\ty\n"a b c',
        "fields.tsv": b"Text\tAnswer\nx\ty\tz\n",
        "binary.tsv": b"Text\tAnswer\n\xff\xfe\x00\tq\n",
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ValueError, match=name):
            read_tsv(str(p))


def test_read_tsv_reads_long_fields_and_refuses_descriptors(tmp_path):
    from sessa.tasks.tsv import read_tsv

    path = tmp_path / "long.tsv"
    text = "a " * 100_000  # 200,000 characters: over csv's default field limit
    path.write_text(f"Text\tAnswer\n{text}\tb\n", encoding="utf-8")
    assert read_tsv(path) == [(text, "b")]
    with pytest.raises(TypeError, match="path must be a file path"):
        read_tsv(3)
