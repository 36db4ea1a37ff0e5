"""Where the CLI's output goes: with ``--json``, stdout carries the JSON alone."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


@contextmanager
def stdout_for_json_only() -> Iterator[TextIO]:
    """While a ``--json`` command runs, ``sys.stdout`` is stderr; yields the real stdout, for the JSON.

    Libraries print on stdout as they please (mmengine's "Using env variable" line for each variable a
    recipe reads, notes, progress): a script reading the JSON must not get them too.
    """
    real = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = real
