"""What reaches the console: how much of mmengine's logging, on which stream, and tables whole in a pipe.

mmengine writes its environment, the whole config, every hook and every logged iteration at INFO,
about 300 lines a run, plus deprecation warnings about its own internals, all on stdout. harma-zoo
shows its own progress bar and tables instead, so by default the console gets mmengine's errors
only; ``set_verbose(True)`` (the CLI's ``--verbose``) shows everything. The log file mmengine
keeps in a run's work dir always has every INFO line. Console lines go to stderr, as Python's
logging does, so they never mix into a command's output (``--json``). Nothing here imports torch.
"""

from __future__ import annotations

import logging
import sys

from mmengine.logging import MMLogger
from rich.console import Console
from rich.table import Table

_quiet_level = logging.ERROR
UNBOUNDED = 100_000  # columns offered to a table measuring its natural width


def set_verbose(verbose: bool) -> None:
    """Show mmengine's INFO lines on the console (``True``) or its errors only (the default)."""
    global _quiet_level
    _quiet_level = logging.INFO if verbose else logging.ERROR
    quiet_console(MMLogger.get_current_instance())


def quiet_console(logger: logging.Logger) -> logging.Logger:
    """Point ``logger``'s console handlers at stderr and raise them to the chosen level; files keep theirs."""
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:  # a FileHandler is a StreamHandler subclass: left alone
            handler.stream = sys.stderr  # not setStream(), which flushes the old stream, maybe closed by now
            handler.setLevel(max(handler.level, _quiet_level))
    return logger


def print_table(console: Console, table: Table) -> None:
    """``table`` at the terminal's width; into a pipe or a file at its natural width, one line per row.

    Not writing to a terminal, rich assumes 80 columns and folds wide tables until narrow cells hold a
    letter per line; a pipe has no width to respect, so the table gets what it needs.
    """
    if console.is_terminal:
        console.print(table)
    else:
        natural = console.measure(table, options=console.options.update_width(UNBOUNDED)).maximum
        # console.print(width=...) cannot exceed the console's own width: a console as wide as the table prints it
        wide = Console(file=console.file, width=max(console.width, natural), color_system=console.color_system)
        wide.print(table)
