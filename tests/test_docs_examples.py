"""The Python examples of the README and of docs/ run as written, from the project root.

Every block fenced as ``python`` runs in its own interpreter with an empty zoo cache;
sketches that are not meant to run are fenced as ``py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
PAGES = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(PROJECT)}#{number}", code)
        for page in PAGES
        for number, code in enumerate(BLOCK.findall(page.read_text(encoding="utf-8")), start=1)
    ]


def test_the_readme_has_a_python_example() -> None:
    assert any(where.startswith("README.md") for where, _ in _blocks())


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[where for where, _ in _blocks()])
def test_the_example_runs_as_written(where: str, code: str, tmp_path: Path, shared_data: Path) -> None:
    env = {**os.environ, "HARMA_ZOO_HOME": str(tmp_path / "zoo-home")}
    env.pop("HARMA_ZOO_REGISTRY", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{where} printed nothing"
