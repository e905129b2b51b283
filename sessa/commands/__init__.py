"""CLI sub-commands: each module defines add_arguments(parser) and run(args) -> exit code."""
