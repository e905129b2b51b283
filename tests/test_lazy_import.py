"""`import sessa`, `sessa --help` and `sessa <command> --help` import neither torch nor transformers; the
public names still resolve lazily. Subprocesses: this test process has long imported torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
# every command whose add_arguments stays light (bench's needs the model table, which imports torch)
LIGHT_COMMANDS = ["bench", "train", "eval", "data", "generate", "tails", "info"]


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)


def _imported(importtime_stderr: str) -> set[str]:
    """Top-level package names in `python -X importtime` output ('import time: self | cumulative | name')."""
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_top_level_help_imports_no_torch() -> None:
    r = _python("-X", "importtime", "-m", "sessa", "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    for cmd in ("bench", "train", "eval", "data", "generate", "tails", "info"):  # every command is listed
        assert cmd in r.stdout
    mods = _imported(r.stderr)
    assert "sessa" in mods  # the parser saw the import lines at all
    assert not {"torch", "transformers", "numpy"} & mods, sorted(mods)


@pytest.mark.parametrize("command", [None, *LIGHT_COMMANDS])
def test_command_help_imports_no_torch(command: str | None) -> None:
    argv = [command, "--help"] if command else ["--help"]
    code = f"""
import sys
from sessa.cli import main
try:
    main({argv!r})
except SystemExit as e:
    assert e.code == 0, e.code
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
assert not heavy, heavy
print("ok")
"""
    r = _python("-c", code)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-1000:] + r.stderr[-2000:]
    if command:
        assert "usage: sessa " + command in r.stdout  # the command's own arguments were built


def test_lazy_public_names() -> None:
    code = """
import sys
import sessa
assert "torch" not in sys.modules and "transformers" not in sys.modules
assert sessa.__version__
names = dir(sessa)
for n in sessa.__all__:
    assert n in names, n
assert "ops" in names and "SessaLM" in names
from sessa import SessaLM, feedback_solve
assert "torch" in sys.modules
assert SessaLM is sessa.models.lm.SessaLM and feedback_solve is sessa.ops.feedback_solve
assert all(getattr(sessa, n) is not None for n in sessa.__all__)
try:
    sessa.no_such_name
except AttributeError as e:
    assert "no_such_name" in str(e)
else:
    raise AssertionError("expected AttributeError")
print("ok")
"""
    r = _python("-c", code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_version_without_torch() -> None:
    r = _python("-c", "import sys; from sessa.cli import main\ntry:\n    main(['--version'])\n"
                      "except SystemExit:\n    pass\nassert 'torch' not in sys.modules")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("sessa ")


def test_build_parser_defaults_to_every_command() -> None:
    from sessa.cli import build_parser

    args = build_parser().parse_args(["info", "--d-model", "32"])
    assert args.d_model == 32 and args.command == "info"
    # only the named commands get their arguments
    with pytest.raises(SystemExit):
        build_parser(["train"]).parse_args(["info", "--d-model", "32"])
