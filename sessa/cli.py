"""`sessa` command line: one sub-command per module in sessa/commands (imported only when used)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable

# name -> (module, one-line help); each module defines add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("sessa.commands.bench", "train Sessa and the baselines on a task with one budget; table + plot"),
    "train": ("sessa.commands.train", "train a model from a YAML config and/or flags (resumable)"),
    "eval": ("sessa.commands.eval", "evaluate a checkpoint: loss, perplexity, top-1/top-5 accuracy"),
    "data": ("sessa.commands.data", "generate task data sets (SymbolSoup, Diffuse MQAR, ...)"),
    "generate": ("sessa.commands.generate", "sample text from a checkpoint, streaming tokens"),
    "tails": ("sessa.commands.tails", "measure memory tails (influence vs lag) and fit exponents"),
    "info": ("sessa.commands.info", "print a model's configuration and parameter counts"),
}


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The `sessa` parser: every command is listed with its one-line help, but only the `commands` named
    (default: all) get their arguments, i.e. have their module imported. `main` builds only the one being
    run, so `sessa --help` and `sessa train --help` import no command module they do not need."""
    wanted = set(COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(prog="sessa", description="Sessa: Selective State Space Attention")
    parser.add_argument("--version", action="version", version=f"sessa {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=mod)
        if name in wanted:
            importlib.import_module(mod).add_arguments(p)
    return parser


def _command_in(argv: list[str]) -> list[str]:
    """The sub-command an argv runs: its first word that does not start with '-' (the top-level parser has
    only --help and --version, neither taking a value), if that names a command."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return [first] if first in COMMANDS else []


def _version() -> str:
    from sessa import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as e:
        # user errors get one clear line, not a traceback
        print(f"sessa {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sessa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
