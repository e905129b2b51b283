"""`sessa data TASK --out DIR`: write a generated task's splits as TSV files (Text, Answer).

`--layout authors` (SymbolSoup) writes exactly the files of the authors' `datasets/SymbolSoup.py`, byte for byte
for the same arguments: their --num_train_samples, --num_valid_samples, --num_test_samples, --min_tokens,
--max_tokens and --seed are our --n-train, --n-validation, --n-test, --min-len, --max-len and --seed.
"""

from __future__ import annotations

import argparse

GENERATED = ("symbolsoup", "diffuse_mqar", "mqar", "passkey")
# flag -> option name; a flag left unset keeps the task's default (see docs/tasks.md)
FLAGS: dict[str, tuple[type, str]] = {
    "n_train": (int, "training examples (SymbolSoup: a multiple of 20)"),
    "n_validation": (int, "validation examples"),
    "n_test": (int, "test examples"),
    "seed": (int, "data seed"),
    "min_len": (int, "symbolsoup: shortest Text in tokens (authors' counting)"),
    "max_len": (int, "symbolsoup: longest Text in tokens (authors' counting)"),
    "num_pairs": (int, "(diffuse_)mqar: key-value pairs in memory"),
    "num_queries": (int, "(diffuse_)mqar: queried pairs"),
    "key_len": (int, "diffuse_mqar: tokens per key"),
    "value_len": (int, "diffuse_mqar: tokens per value"),
    "min_lag": (int, "diffuse_mqar: smallest source-query lag"),
    "max_lag": (int, "diffuse_mqar: largest training lag"),
    "test_lag_factor": (int, "diffuse_mqar: test lags reach this multiple of max_lag"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=GENERATED, help="which generator")
    p.add_argument("--out", required=True, help="output folder (created); files are written atomically")
    p.add_argument("--splits", default="train,validation,test", help="comma-separated splits to write")
    p.add_argument("--layout", choices=("sessa", "authors"), default="sessa",
                   help="sessa: train.tsv, validation.tsv, test.tsv, labels.txt, meta.json (LF rows); authors "
                        "(symbolsoup only): the authors' symbol_soup_{train,val,test}.tsv and symbol_soup_labels.tsv, "
                        "answers CLASS_k, CRLF rows, byte-identical to their script for the same arguments")
    for name, (typ, help_) in FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other task option, VALUE read as YAML/JSON (e.g. distance=[64,256])")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    from sessa.commands.common import parse_key_values
    from sessa.tasks import build_task
    from sessa.tasks.tsv import write_task_files

    options = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    options.update(parse_key_values(args.set, "--set"))
    task = build_task(args.task, **options)
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    if not splits:
        raise ValueError("--splits must name at least one of train, validation, test")
    written = write_task_files(task, args.out, splits=splits, progress=not args.no_progress, layout=args.layout)
    for what, path in written.items():
        print(f"{what}: {path}")
    return 0
