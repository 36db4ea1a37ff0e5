"""The ``harma-zoo`` command line: thin subcommands over the library.

Each group of subcommands lives in its own module and adds its parsers through ``add_commands``;
building the parser imports no torch, so ``harma-zoo --help`` answers at once. A handler imports
what it needs when it runs. Plug-ins (installed ones and ``--import MODULE``) are imported right
before the handler, in every process of a torchrun launch, since each one runs this same ``main``.

Exit codes: 0 done; 1 the work failed (a download, a checksum, a training run, anything unforeseen);
2 the input was wrong (an argument, a file, a recipe key or value, a plug-in that does not import:
argparse's own code for bad arguments); 130 interrupted (Ctrl-C). An error is one line naming the
input and what was expected; ``--debug`` prints the traceback as well.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from contextlib import nullcontext

from rich.console import Console
from rich.text import Text

from harma_zoo import __version__
from harma_zoo.cli import bench_command, model_commands, search_commands, zoo_commands
from harma_zoo.cli.output import stdout_for_json_only
from harma_zoo.plugins import PluginError, load_plugins

COMMAND_MODULES = (model_commands, bench_command, zoo_commands, search_commands)
IMPORT_HELP = (
    "import a plug-in module first (your family, method, loss or reader): a dotted name on sys.path "
    "or a .py file; repeatable"
)
DESCRIPTION = """\
HarMA-style parameter-efficient transfer for dual-encoder vision-language models:
train, evaluate and benchmark adapters for image-text retrieval, and fetch
published ones from the zoo."""
EPILOG = """\
a first session:
  harma-zoo list checkpoints                  what the zoo publishes
  harma-zoo fetch NAME                        one adapter into the cache (sha256-checked)
  harma-zoo eval RECIPE --checkpoint PATH     its retrieval figures (--limit N: the first N images)

`harma-zoo COMMAND --help` lists a command's options; docs/getting-started.md walks through more."""
DEBUG_HELP = "on an error, print the traceback too"
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
# The input was wrong. Everything else (OSError: a disk, the network, a hub offline; RuntimeError ...) is a failure.
USAGE_ERRORS = (PluginError, KeyError, ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
                NotADirectoryError)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harma-zoo", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"harma-zoo {__version__}")
    # Accepted before the subcommand and after it; the two positions have their own lists (a subcommand's
    # defaults would otherwise replace what was given before it), joined in `plugin_imports`.
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    for subcommand in commands.choices.values():
        subcommand.add_argument(
            "--import", dest="command_imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP
        )
        # SUPPRESS: `--debug` after the subcommand sets it, its absence leaves what came before the subcommand
        subcommand.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        subcommand.add_argument(
            "--verbose", action="store_true", help="also show mmengine's log lines (the run's log file has them all)"
        )
    return parser


def plugin_imports(args: argparse.Namespace) -> list[str]:
    """The ``--import`` values, those before the subcommand first."""
    return [*args.imports, *args.command_imports]


def exit_code(error: BaseException) -> int:
    """What the process returns for ``error``: usage (2) or failure (1); see the module's docstring."""
    from harma_zoo.hub.download import ChecksumError, FetchError, WeightsUnavailable  # here: keeps --help fast

    if isinstance(error, (FetchError, ChecksumError, WeightsUnavailable)):  # the input was fine, the hub was not
        return EXIT_FAILURE
    return EXIT_USAGE if isinstance(error, USAGE_ERRORS) else EXIT_FAILURE


def error_line(error: BaseException) -> str:
    """The one line an error prints: its message; an unforeseen kind of error also names its type."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    text = " ".join(str(message).split()) or type(error).__name__
    if isinstance(error, (*USAGE_ERRORS, OSError)):
        return text
    return f"{type(error).__name__}: {text} (--debug prints the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harma_zoo.engine.console import set_verbose

    set_verbose(args.verbose)
    json_only = getattr(args, "json", False)
    # with --json everything but the JSON goes to stderr; paths and key lists print as they are (`[...]` is no markup)
    console = Console(stderr=json_only, markup=False)
    try:
        load_plugins(plugin_imports(args))
        with stdout_for_json_only() if json_only else nullcontext(sys.stdout) as stdout:
            args.stdout = stdout
            return args.run(args, console)
    except KeyboardInterrupt:
        console.print(Text("interrupted", style="yellow"))
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        console.print(Text.assemble(("error:", "red"), " ", error_line(error)), highlight=False, soft_wrap=True)
        return exit_code(error)


if __name__ == "__main__":
    sys.exit(main())
