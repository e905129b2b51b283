"""Task files: one TSV per split with the authors' columns `Text` and `Answer`, plus a label vocabulary.

Two layouts. "sessa" (default): train.tsv, validation.tsv, test.tsv, labels.txt and meta.json, rows ending
in LF. "authors" (SymbolSoup only): exactly the files the authors' `datasets/SymbolSoup.py` writes -
<prefix>_train.tsv, <prefix>_val.tsv, <prefix>_test.tsv and <prefix>_labels.tsv (columns Label, ClassId),
answers 'CLASS_k', rows ending in CRLF (the csv module's default) - byte for byte for the same seed and sizes.

Texts contain newlines (SymbolSoup puts every block on its own line), so fields are written with the csv
module's minimal quoting (a field holding a tab, quote or newline is wrapped in double quotes), which
`read_tsv`, Python's csv reader and `pandas.read_csv(path, sep="\\t")` all read back exactly, in either layout.
"""

from __future__ import annotations

import csv
import glob
import os
from typing import Any

from sessa.tasks.base import SyntheticTask
from sessa.utils.checks import SPLITS, check_choice, check_split
from sessa.utils.io import atomic_write, atomic_write_json, atomic_write_text

HEADER = ("Text", "Answer")
LABEL_VOCAB_FILE = "labels.txt"
META_FILE = "meta.json"
LAYOUTS = ("sessa", "authors")
AUTHORS_SPLIT = {"train": "train", "validation": "val", "test": "test"}  # the authors' file-name suffixes


def write_split_tsv(task: SyntheticTask, split: str, path: str, *, progress: bool = False,
                    layout: str = "sessa") -> int:
    """Write split `split` of `task` to `path` (atomically); returns the number of rows."""
    split = check_split(split)
    check_choice("layout", layout, LAYOUTS)
    n = task.split_size(split)
    rename = _authors_answers(task) if layout == "authors" else {}

    def write(f: Any) -> None:
        # the authors' csv.writer keeps the default "\r\n" row terminator; ours ends rows in "\n"
        w = csv.writer(f, delimiter="\t", lineterminator="\r\n" if layout == "authors" else "\n")
        w.writerow(HEADER)
        rows = range(n)
        if progress:
            from tqdm.auto import tqdm

            rows = tqdm(rows, desc=f"{task.name} {split}", unit="ex")
        for i in rows:
            text, answer = task.text_example(split, i)
            w.writerow((text, rename.get(answer, answer)))

    with atomic_write(path, "w") as f:
        write(f)
    return n


def _authors_answers(task: SyntheticTask) -> dict[str, str]:
    """Our answer string -> the authors' one, for a task that has the authors' layout."""
    layout = getattr(task, "authors_layout", None)
    vocab = task.label_vocab()
    if layout is None or vocab is None:
        raise ValueError(f"layout='authors' exists only for symbolsoup (the one task whose generator the authors "
                         f"published), got task {task.name!r}")
    return dict(zip(vocab, layout["answers"], strict=True))


def write_task_files(task: SyntheticTask, out_dir: str, *, splits: tuple[str, ...] = SPLITS,
                     progress: bool = False, layout: str = "sessa") -> dict[str, str]:
    """layout "sessa": <split>.tsv per split, labels.txt (when the task has a label vocabulary) and meta.json;
    layout "authors" (SymbolSoup): <prefix>_{train,val,test}.tsv and <prefix>_labels.tsv (module docstring)."""
    if not isinstance(task, SyntheticTask):
        raise TypeError(f"task must be a generated task (symbolsoup, diffuse_mqar, mqar, passkey), "
                        f"got {type(task).__name__}")
    check_choice("layout", layout, LAYOUTS)
    if layout == "authors":
        _authors_answers(task)  # fail before writing anything
    splits = tuple(check_split(s) for s in splits)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir must be a folder, but {out_dir!r} is a file")
    os.makedirs(out_dir, exist_ok=True)
    prepare = getattr(task, "prepare", None)
    if prepare is not None:
        prepare(progress=progress)  # SymbolSoup draws all splits in one stream before the first row
    written = {}
    for split in splits:
        name = f"{task.authors_layout['prefix']}_{AUTHORS_SPLIT[split]}" if layout == "authors" else split
        path = os.path.join(out_dir, name + ".tsv")
        write_split_tsv(task, split, path, progress=progress, layout=layout)
        written[split] = path
    if layout == "authors":
        spec = task.authors_layout
        path = os.path.join(out_dir, f"{spec['prefix']}_labels.tsv")

        def write_labels(f: Any) -> None:
            w = csv.writer(f, delimiter="\t", lineterminator="\r\n")
            w.writerow(spec["labels_header"])
            w.writerows((name, k) for k, name in enumerate(spec["answers"]))

        with atomic_write(path, "w") as f:
            write_labels(f)
        written["labels"] = path
        return written
    vocab = task.label_vocab()
    if vocab is not None:
        path = os.path.join(out_dir, LABEL_VOCAB_FILE)
        atomic_write_text(path, "".join(v + "\n" for v in vocab))
        written["labels"] = path
    meta = {"task": task.name, "options": task.options,
            "rows": {s: task.split_size(s) for s in splits}, "columns": list(HEADER)}
    path = os.path.join(out_dir, META_FILE)
    atomic_write_json(path, meta)
    written["meta"] = path
    return written


def read_tsv(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Rows (Text, Answer) of a TSV written by write_split_tsv; a malformed file raises ValueError naming it.

    Fields may be as long as the file (csv's default limit of 131,072 characters is lifted while reading:
    a passkey text at distance 70,000 is longer).
    """
    if not isinstance(path, (str, os.PathLike)):  # an int would be read as a file descriptor, and closed
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    path = os.fspath(path)
    rows: list[tuple[str, str]] = []
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, os.path.getsize(path) + 1 if os.path.isfile(path) else limit))
    try:
        with open(path, encoding="utf-8", newline="") as f:
            r = csv.reader(f, delimiter="\t", strict=True)
            header = next(r, None)
            if header is None or tuple(header) != HEADER:
                raise ValueError(f"{path} must start with the header {list(HEADER)}, got {header!r}")
            for row in r:
                if len(row) != len(HEADER):
                    raise ValueError(f"{path}, record {r.line_num}: expected {len(HEADER)} tab-separated fields "
                                     f"(Text, Answer), got {len(row)} — the file is truncated or corrupt")
                rows.append((row[0], row[1]))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path} is not a valid UTF-8 TSV file: {e}") from None
    finally:
        csv.field_size_limit(limit)
    return rows


def find_split_files(data_dir: str) -> dict[str, str]:
    """split -> TSV path in `data_dir`, in our layout (train.tsv, validation.tsv, test.tsv) or the authors'
    (<prefix>_train.tsv, <prefix>_val.tsv, <prefix>_test.tsv with one prefix); splits without a file are left
    out. Raises FileNotFoundError when the folder holds neither layout, ValueError when it is ambiguous."""
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a folder path, got {data_dir!r}")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data_dir {data_dir!r} is not a folder")
    ours = {s: os.path.join(data_dir, f"{s}.tsv") for s in SPLITS}
    ours = {s: p for s, p in ours.items() if os.path.isfile(p)}
    prefixes = sorted({os.path.basename(p)[:-len(f"_{suffix}.tsv")]
                       for suffix in AUTHORS_SPLIT.values()
                       for p in glob.glob(os.path.join(glob.escape(data_dir), f"*_{suffix}.tsv"))})
    if ours and prefixes or len(prefixes) > 1:
        found = (["train.tsv/validation.tsv/test.tsv"] if ours else []) + [f"{p}_*.tsv" for p in prefixes]
        raise ValueError(f"data_dir {data_dir!r} holds several data sets ({', '.join(found)}); keep one per folder")
    if prefixes:
        theirs = {s: os.path.join(data_dir, f"{prefixes[0]}_{suffix}.tsv") for s, suffix in AUTHORS_SPLIT.items()}
        return {s: p for s, p in theirs.items() if os.path.isfile(p)}
    if not ours:
        raise FileNotFoundError(f"data_dir {data_dir!r} holds no train.tsv/validation.tsv/test.tsv "
                                f"and no <prefix>_train.tsv/_val.tsv/_test.tsv files")
    return ours
