"""`python -m sessa.train ...` / `torchrun --nproc-per-node N -m sessa.train ...`: same flags as `sessa train`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from sessa.commands import train as cmd

    parser = argparse.ArgumentParser(prog="python -m sessa.train", description="train a Sessa model")
    cmd.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.launcher != "none":
        parser.error("--launcher is for `sessa train`; python -m sessa.train is what torchrun runs")
    try:
        return cmd.run(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"sessa.train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
