"""Georeferenced scenes: chips with their windows and footprints, reading a chip, footprints in EPSG:4326.

A scene (a GeoTIFF) is cut into square chips of ``chip`` pixels that overlap by ``overlap``
pixels; the last chip of a row or column is moved back to end at the scene's border, so every
chip is a full chip and no pixel is left out. Each chip keeps its pixel window, its footprint
(the window's four corners through the scene's affine transform, in the scene's CRS) and the
CRS; footprints go to EPSG:4326 only when they are written out as GeoJSON.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from rasterio.windows import Window as RasterWindow

from harma_zoo.data.synthetic import draw_scene, scenes_for
from harma_zoo.fileio import atomic_write
from harma_zoo.search.errors import SearchError
from harma_zoo.search.items import Item, Ring, Window

__all__ = [
    "chip_offsets",
    "footprint_lonlat",
    "read_chip",
    "scene_chips",
    "write_synthetic_scene",
]

GEOGRAPHIC = "EPSG:4326"


def chip_offsets(length: int, chip: int, overlap: int) -> list[int]:
    """Start offsets of the chips along one side of ``length`` pixels."""
    if length <= chip:
        return [0]
    stride = chip - overlap
    offsets = list(range(0, length - chip, stride))
    offsets.append(length - chip)
    return offsets


def check_chip_options(chip: int, overlap: int) -> None:
    if chip < 1:
        raise SearchError(f"--chip must be a positive number of pixels, got {chip}")
    if not 0 <= overlap < chip:
        raise SearchError(f"--overlap must be at least 0 and below --chip ({chip}), got {overlap}")


@contextmanager
def _open_scene(path: str | Path) -> Iterator[rasterio.DatasetReader]:
    """The scene, opened for reading; a scene without georeference is told by its missing CRS, not a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as scene:
            yield scene


def scene_chips(path: Path, chip: int, overlap: int, geo: bool = True) -> list[Item]:
    """The chips of the scene at ``path``; a scene without a CRS is an error unless ``geo`` is False."""
    stat = os.stat(path)
    try:
        with _open_scene(path) as scene:
            width, height, crs, transform = scene.width, scene.height, scene.crs, scene.transform
            dtype = scene.dtypes[0]
    except RasterioError as error:
        raise SearchError(f"cannot read scene {path}: {error}") from None
    if dtype != "uint8":
        raise SearchError(f"scene {path} holds {dtype} pixels; expected 8-bit (uint8) bands")
    if geo and crs is None:
        raise SearchError(f"scene {path} has no CRS, so its chips would have no footprint; pass --no-geo to index it")
    items = []
    for row in chip_offsets(height, chip, overlap):
        for col in chip_offsets(width, chip, overlap):
            window = (col, row, min(chip, width), min(chip, height))
            footprint = _footprint(transform, window) if geo else None
            crs_name = crs.to_string() if geo else None
            items.append(Item(os.path.abspath(path), window, stat.st_size, stat.st_mtime_ns, crs_name, footprint))
    return items


def _footprint(transform: Any, window: Window) -> Ring:
    col, row, width, height = window
    corners = ((col, row), (col + width, row), (col + width, row + height), (col, row + height), (col, row))
    return tuple(tuple(float(v) for v in transform @ corner) for corner in corners)


def read_chip(path: str, window: Window) -> Image.Image:
    """The RGB image of one chip: bands 1-3 of the scene (band 1 as grey when it has fewer than three)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"scene file {path} does not exist")
    col, row, width, height = window
    try:
        with _open_scene(path) as scene:
            bands = [1, 2, 3] if scene.count >= 3 else [1, 1, 1]
            pixels = scene.read(bands, window=RasterWindow(col, row, width, height))
    except RasterioError as error:
        raise SearchError(f"cannot read chip col {col}, row {row} of scene {path}: {error}") from None
    return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")


def footprint_lonlat(footprint: Ring, crs: str) -> list[list[float]]:
    """The footprint's ring in EPSG:4326, as GeoJSON wants it: [longitude, latitude] pairs."""
    geometry = transform_geom(crs, GEOGRAPHIC, {"type": "Polygon", "coordinates": [list(footprint)]})
    return [list(point) for point in geometry["coordinates"][0]]


def write_synthetic_scene(
    path: str | Path,
    tiles: int = 3,
    tile_size: int = 224,
    seed: int = 0,
    crs: str = "EPSG:32631",
    origin: tuple[float, float] = (500_000.0, 5_000_000.0),
    pixel_size: float = 0.5,
) -> Path:
    """A small georeferenced RGB GeoTIFF drawn by the package: ``tiles`` x ``tiles`` synthetic aerial scenes.

    The scene lies in UTM zone 31N by default (west edge on the zone's central meridian, 3 degrees
    east, at about 45 degrees north), 0.5 m pixels. Deterministic: the same arguments give the same
    pixels. Written to a temporary name and renamed, so a reader never sees half of it.
    """
    rng = np.random.default_rng(seed)
    size = tiles * tile_size
    pixels = np.zeros((3, size, size), dtype=np.uint8)
    for index, scene in enumerate(scenes_for(tiles * tiles, seed)):
        row, col = divmod(index, tiles)
        tile = np.asarray(draw_scene(scene, tile_size, rng)).transpose(2, 0, 1)
        pixels[:, row * tile_size : (row + 1) * tile_size, col * tile_size : (col + 1) * tile_size] = tile
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": crs,
        "transform": from_origin(origin[0], origin[1], pixel_size, pixel_size),
        "compress": "deflate",
    }
    if size >= 512:  # internal tiles, as large scenes have them; a small one is stored in strips
        profile.update(tiled=True, blockxsize=256, blockysize=256)

    def write(temporary: Path) -> None:
        with rasterio.open(temporary, "w", **profile) as out:
            out.write(pixels)

    path = Path(path)
    atomic_write(path, write)
    return path
