"""Build step (named in pyproject.toml's ``[tool.setuptools.cmdclass]``): ship the project's data folders.

A wheel gets ``recipes/``, ``registry/``, ``model_cards/`` (and ``zoo_files/`` when present) as
``harma_zoo/_data/<folder>``, where :func:`harma_zoo.resources.project_folder` finds them when no
folder sits beside the package; an sdist gets them at its top level, so a wheel built from it
has them too. Editable installs read the folders of the checkout and copy nothing. Used by
setuptools at build time only; nothing imports it at run time.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

DATA_FOLDERS = ("recipes", "registry", "model_cards")
OPTIONAL_FOLDERS = ("zoo_files",)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def copy_data_folders(source_root: Path, target: Path) -> list[Path]:
    """Copy the data folders from ``source_root`` into ``target``; a missing required one is an error."""
    copied = []
    for name in DATA_FOLDERS + OPTIONAL_FOLDERS:
        source = source_root / name
        if not source.is_dir():
            if name in OPTIONAL_FOLDERS:
                continue
            raise FileNotFoundError(f"cannot package {name}/: {source} is missing")
        destination = target / name
        shutil.rmtree(destination, ignore_errors=True)
        shutil.copytree(source, destination, ignore=IGNORE)
        copied.append(destination)
    return copied


class BuildPyWithData(build_py):
    """``build_py`` that also places the data folders under ``harma_zoo/_data/`` in the build tree."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        copy_data_folders(Path.cwd(), Path(self.build_lib) / "harma_zoo" / "_data")


class SdistWithData(sdist):
    """``sdist`` that keeps the data folders at the top of the source tree."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        copy_data_folders(Path.cwd(), Path(base_dir))
