"""From an archive to the items to embed: a folder, a list file, or GeoTIFF scenes cut into chips.

- A folder is searched recursively for JPEG, PNG and TIFF files, in sorted path order.
- A list file (any other file) names one image or scene per line, relative to the list's own
  folder or absolute; blank lines and lines starting with ``#`` are skipped; order is kept.
- TIFF files are scenes, read with rasterio and cut into chips (``--chip``, ``--overlap``);
  a scene no larger than one chip is one chip. JPEG and PNG files are whole images.
"""

from __future__ import annotations

import os
from pathlib import Path

from harma_zoo.search.errors import SearchError
from harma_zoo.search.geo import check_chip_options, scene_chips
from harma_zoo.search.items import Item, unique_items

__all__ = ["IMAGE_SUFFIXES", "SCENE_SUFFIXES", "archive_items"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SCENE_SUFFIXES = (".tif", ".tiff")
_SUFFIXES = IMAGE_SUFFIXES + SCENE_SUFFIXES


def archive_items(archive: str | Path, chip: int = 224, overlap: int = 0, geo: bool = True) -> list[Item]:
    """Every item of ``archive``, in archive order; an archive with nothing to embed is an error."""
    check_chip_options(chip, overlap)
    archive = Path(archive)
    if not archive.exists():
        raise FileNotFoundError(f"archive {archive} does not exist")
    if archive.is_dir():
        files = sorted(p for p in archive.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file())
        if not files:
            raise SearchError(f"archive {archive} holds no JPEG, PNG or TIFF files (searched recursively)")
    elif archive.suffix.lower() in _SUFFIXES:
        files = [archive]
    else:
        files = _listed_files(archive)
    items: list[Item] = []
    for path in files:
        if path.suffix.lower() in SCENE_SUFFIXES:
            items.extend(scene_chips(path, chip, overlap, geo))
        else:
            stat = os.stat(path)
            items.append(Item(os.path.abspath(path), None, stat.st_size, stat.st_mtime_ns))
    return unique_items(items)


def _listed_files(listing: Path) -> list[Path]:
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise SearchError(f"list file {listing} is not UTF-8 text ({error}); expected one image path a line") from None
    files = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry) if os.path.isabs(entry) else listing.parent / entry
        if path.suffix.lower() not in _SUFFIXES:
            raise SearchError(
                f"list file {listing}, line {number}: {entry} is not a JPEG, PNG or TIFF file "
                f"(expected one of {', '.join(_SUFFIXES)})"
            )
        if not path.is_file():
            raise FileNotFoundError(f"list file {listing}, line {number}: {path} does not exist")
        files.append(path)
    if not files:
        raise SearchError(f"list file {listing} names no image (one path a line expected)")
    return files
