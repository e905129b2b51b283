"""`python -m sessa COMMAND ...` (what `torchrun ... -m sessa train ...` runs): the same as the `sessa` script."""

import sys

from sessa.cli import main

if __name__ == "__main__":
    sys.exit(main())
