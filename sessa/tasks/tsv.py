"""The authors' file layout: one TSV per split with columns `Text` and `Answer`, plus a label vocabulary.

Texts contain newlines (SymbolSoup puts every block on its own line), so fields are written with the csv
module's minimal quoting (a field holding a tab, quote or newline is wrapped in double quotes), which
`read_tsv`, Python's csv reader and `pandas.read_csv(path, sep="\\t")` all read back exactly.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any

from sessa.tasks.base import SyntheticTask, write_text_atomic
from sessa.utils.checks import SPLITS, check_split

HEADER = ("Text", "Answer")
LABEL_VOCAB_FILE = "labels.txt"
META_FILE = "meta.json"


def write_split_tsv(task: SyntheticTask, split: str, path: str, *, progress: bool = False) -> int:
    """Write split `split` of `task` to `path` (atomically); returns the number of rows."""
    split = check_split(split)
    n = task.split_size(split)

    def write(f: Any) -> None:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(HEADER)
        rows = range(n)
        if progress:
            from tqdm.auto import tqdm

            rows = tqdm(rows, desc=f"{task.name} {split}", unit="ex")
        for i in rows:
            w.writerow(task.text_example(split, i))

    write_text_atomic(path, write)
    return n


def write_task_files(task: SyntheticTask, out_dir: str, *, splits: tuple[str, ...] = SPLITS,
                     progress: bool = False) -> dict[str, str]:
    """<split>.tsv for each split, labels.txt (when the task has a label vocabulary) and meta.json."""
    if not isinstance(task, SyntheticTask):
        raise TypeError(f"task must be a generated task (symbolsoup, diffuse_mqar, mqar, passkey), "
                        f"got {type(task).__name__}")
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for split in splits:
        split = check_split(split)
        path = os.path.join(out_dir, f"{split}.tsv")
        write_split_tsv(task, split, path, progress=progress)
        written[split] = path
    vocab = task.label_vocab()
    if vocab is not None:
        path = os.path.join(out_dir, LABEL_VOCAB_FILE)
        write_text_atomic(path, lambda f: f.write("".join(v + "\n" for v in vocab)))
        written["labels"] = path
    meta = {"task": task.name, "options": task.options,
            "rows": {s: task.split_size(s) for s in splits}, "columns": list(HEADER)}
    path = os.path.join(out_dir, META_FILE)
    write_text_atomic(path, lambda f: f.write(json.dumps(meta, indent=2) + "\n"))
    written["meta"] = path
    return written


def read_tsv(path: str) -> list[tuple[str, str]]:
    """Rows (Text, Answer) of a TSV written by write_split_tsv; a malformed file raises ValueError naming it."""
    rows: list[tuple[str, str]] = []
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
    return rows
