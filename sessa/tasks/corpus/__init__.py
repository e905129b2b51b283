"""Offline text corpora for the `lm` task: the Python standard library's docstrings, local files, datasets.

- "stdlib" (default): the docstrings (module, class, function; in source order) of the public top-level
  modules of the running Python's standard library (`sysconfig.get_paths()["stdlib"]/*.py`, names not
  starting with "_", sorted by file name), one document per module. It ships with Python, needs no
  download, and is identical on every machine with the same Python version (about 0.8 M characters
  on CPython 3.11). If the sources are missing (some minimal installs), the fallback corpus is used.
- "fallback": a short text shipped in this folder (fallback.txt), for tests and demos only.
- a path: one file (one document) or a folder (every file whose name ends in one of `extensions`,
  recursively, sorted by relative path, one document each), read as UTF-8.
- "hf:NAME": a Hugging Face `datasets` data set the user already has in the local cache (the optional
  `datasets` package is imported only then, in offline mode, so nothing is downloaded).
"""

from __future__ import annotations

import ast
import functools
import os
import sysconfig

FALLBACK_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fallback.txt")
DEFAULT_EXTENSIONS = (".txt", ".md", ".rst")
MIN_STDLIB_CHARS = 100_000  # below this the stdlib sources are deemed missing/stripped


def _docstrings(node: ast.AST, out: list[str]) -> None:
    """Collect docstrings of node and its nested classes/functions in source order."""
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            out.append(doc)
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            _docstrings(child, out)


@functools.lru_cache(maxsize=2)
def stdlib_documents() -> tuple[tuple[str, str], ...]:
    """((module file name, its docstrings joined by blank lines), ...) for the stdlib's public modules."""
    root = sysconfig.get_paths().get("stdlib", "")
    names = sorted(n for n in os.listdir(root) if n.endswith(".py") and not n.startswith("_")) \
        if os.path.isdir(root) else []
    docs = []
    for name in names:
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue  # an unreadable module is skipped the same way on every machine that has it so
        parts: list[str] = []
        _docstrings(tree, parts)
        if parts:
            docs.append((name, "\n\n".join(parts)))
    return tuple(docs)


def fallback_documents() -> list[tuple[str, str]]:
    """The shipped fallback text, one document per paragraph."""
    with open(FALLBACK_PATH, encoding="utf-8") as f:
        paras = [p.strip() for p in f.read().split("\n\n") if p.strip()]
    return [(f"fallback/{i}", p) for i, p in enumerate(paras)]


def local_documents(path: str, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> list[tuple[str, str]]:
    """A file (one document) or a folder (matching files, sorted by relative path, one document each)."""
    if os.path.isfile(path):
        files = [(os.path.basename(path), path)]
    elif os.path.isdir(path):
        files = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for fn in filenames:
                if fn.endswith(tuple(extensions)) and not fn.startswith("."):
                    full = os.path.join(dirpath, fn)
                    files.append((os.path.relpath(full, path), full))
        files.sort()
        if not files:
            raise ValueError(f"source folder {path!r} holds no file ending in {list(extensions)}")
    else:
        raise FileNotFoundError(f"source {path!r} is neither 'stdlib', 'fallback', 'hf:NAME' nor an existing "
                                "file or folder")
    docs = []
    for rel, full in files:
        with open(full, encoding="utf-8", errors="replace") as f:
            docs.append((rel, f.read()))
    return docs


def hf_documents(name: str, config: str | None, text_field: str) -> dict[str, list[tuple[str, str]]]:
    """{split: documents} from a locally cached `datasets` data set (offline; never downloads)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # read by datasets at import: no network
    try:
        import datasets
    except ImportError:
        raise ValueError(f"source 'hf:{name}' needs the optional `datasets` package (pip install datasets) "
                         "and the data set in its local cache") from None
    try:
        dd = datasets.load_dataset(name, config)
    except Exception as e:  # datasets raises many types; report them as a user error
        raise ValueError(f"source 'hf:{name}' could not be loaded from the local cache: {e}") from None
    out = {}
    for split, ds in dd.items():
        if text_field not in ds.column_names:
            raise ValueError(f"text_field {text_field!r} is not a column of hf:{name} (columns: "
                             f"{ds.column_names})")
        out[split] = [(f"{split}/{i}", t) for i, t in enumerate(ds[text_field]) if t]
    return out


def load_documents(source: str, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> list[tuple[str, str]]:
    """Documents of a non-hf source ("stdlib", "fallback" or a path) as (name, text) pairs."""
    if source == "stdlib":
        docs = list(stdlib_documents())
        if sum(len(t) for _, t in docs) < MIN_STDLIB_CHARS:
            return fallback_documents()
        return docs
    if source == "fallback":
        return fallback_documents()
    return local_documents(source, extensions)
