"""Fenced code blocks of README.md and docs/*.md, cut into the units the docs test runs.

A unit is a whole Python block, or one command of a shell block (continuation lines joined, comments
dropped). Its id is `FILE[N] first line` for a Python block and `FILE[N].M command` for a shell command,
N counting every fenced block of the file from 1 and M the commands of the block from 1.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PYTHON_LANGS = frozenset({"python", "py"})
SHELL_LANGS = frozenset({"bash", "sh", "shell", "console"})
TEXT_LANGS = frozenset({"text"})  # formulas, file trees, printed output: shown, never run
# Programs a shell unit may start; anything else (make, pip, ...) must be listed in NOT_RUN.
RUNNABLE_PROGRAMS = frozenset({"sessa", "python", "torchrun"})

_OPEN = re.compile(r"^(\s*)```(\S*)\s*$")
_CLOSE = re.compile(r"^\s*```\s*$")
_COMMENT = re.compile(r"(^|\s)#.*$")


@dataclass(frozen=True)
class Block:
    file: str  # relative to the repository root
    ordinal: int  # 1-based among the file's fenced blocks
    line: int  # 1-based line of the opening fence
    lang: str  # "" when the fence names none
    text: str  # dedented by the fence's indentation

    @property
    def id(self) -> str:
        first = next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")
        return f"{self.file}[{self.ordinal}] {first}"


@dataclass(frozen=True)
class Unit:
    """What one test case runs: a Python block or one shell command."""

    block: Block
    kind: str  # "python" or "shell"
    code: str
    index: int = 0  # 1-based command number in a shell block; 0 for Python

    @property
    def id(self) -> str:
        if self.kind == "python":
            return self.block.id
        return f"{self.block.file}[{self.block.ordinal}].{self.index} {self.code}"

    @property
    def program(self) -> str:
        return self.code.split()[0] if self.code.split() else ""


def doc_files(root: str = ROOT) -> list[str]:
    files = [os.path.join(root, "README.md"), *sorted(glob.glob(os.path.join(root, "docs", "*.md")))]
    return [os.path.relpath(f, root) for f in files]


def blocks_of(path: str, root: str = ROOT) -> list[Block]:
    """Every fenced block of one Markdown file; an unclosed fence is an error, not a silent skip."""
    with open(os.path.join(root, path), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2).lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not _CLOSE.match(lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: fenced block never closed")
        out.append(Block(path, len(out) + 1, start + 1, lang, "\n".join(body)))
        i += 1
    return out


def all_blocks(root: str = ROOT) -> list[Block]:
    return [b for f in doc_files(root) for b in blocks_of(f, root)]


def shell_commands(text: str) -> list[str]:
    """Command lines of a shell block: `\\` continuations joined, comments and `$ ` prompts dropped."""
    cmds: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        line = _COMMENT.sub("", line).rstrip() if "#" in line else line
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            cmds.append(line)
    if pending.strip():
        cmds.append(pending.strip())
    return cmds


def units(blocks: list[Block]) -> list[Unit]:
    """Python blocks whole, shell blocks per command; text and untagged blocks give no unit."""
    out: list[Unit] = []
    for b in blocks:
        if b.lang in PYTHON_LANGS:
            out.append(Unit(b, "python", b.text))
        elif b.lang in SHELL_LANGS:
            out.extend(Unit(b, "shell", c, i) for i, c in enumerate(shell_commands(b.text), start=1))
    return out


def looks_like_commands(text: str) -> bool:
    """A `text` block whose lines start like a command is most likely a mis-tagged shell example."""
    programs = {*RUNNABLE_PROGRAMS, "make", "pip"}
    for ln in text.splitlines():
        words = ln.split()
        # "sessa train: stopped ..." is printed output; "sessa train --config ..." is a command
        if len(words) >= 2 and words[0] in programs and not words[1].endswith(":"):
            return True
    return False
