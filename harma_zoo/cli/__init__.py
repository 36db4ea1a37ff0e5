"""The ``harma-zoo`` command line: thin subcommands over the library.

Each group of subcommands lives in its own module and adds its parsers through ``add_commands``;
building the parser imports no torch, so ``harma-zoo --help`` answers at once. A handler imports
what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from harma_zoo.cli import bench_command, model_commands, zoo_commands

COMMAND_MODULES = (model_commands, bench_command, zoo_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harma-zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.run(args, console)
    except (KeyError, ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
