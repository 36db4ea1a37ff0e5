"""Archives into items: folders, list files, GeoTIFF scenes cut into chips with their windows and footprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from search_helpers import write_archive

from harma_zoo.search import SearchError, write_synthetic_scene
from harma_zoo.search.decode import read_item
from harma_zoo.search.geo import chip_offsets, footprint_lonlat
from harma_zoo.search.sources import archive_items


def test_a_folder_is_searched_recursively_for_jpeg_png_and_tiff(tmp_path: Path) -> None:
    paths = write_archive(tmp_path / "archive", 5)
    (tmp_path / "archive" / "notes.txt").write_text("not an image")
    write_synthetic_scene(tmp_path / "archive" / "deep" / "er" / "scene.TIF", tiles=1, tile_size=32)
    items = archive_items(tmp_path / "archive", chip=32)
    assert [item.path for item in items] == sorted(
        [str(p) for p in paths] + [str(tmp_path / "archive" / "deep" / "er" / "scene.TIF")]
    )
    scene = next(item for item in items if item.path.endswith("scene.TIF"))
    assert scene.window == (0, 0, 32, 32) and scene.crs == "EPSG:32631"
    image = next(item for item in items if item.window is None)
    assert image.size == Path(image.path).stat().st_size and image.mtime_ns == Path(image.path).stat().st_mtime_ns


def test_a_list_file_keeps_its_order_and_resolves_relative_paths(tmp_path: Path) -> None:
    paths = write_archive(tmp_path / "images", 3)
    listing = tmp_path / "images" / "list.txt"
    listing.write_text(f"# three images\n{paths[2].name}\n\n{paths[0]}\n{paths[1].relative_to(tmp_path / 'images')}\n")
    assert [item.path for item in archive_items(listing)] == [str(paths[2]), str(paths[0]), str(paths[1])]
    listing.write_text(f"{paths[0].name}\nmissing.png\n")
    with pytest.raises(FileNotFoundError, match=r"list.txt, line 2: .*missing.png does not exist"):
        archive_items(listing)
    listing.write_text("notes.docx\n")
    with pytest.raises(SearchError, match="line 1: notes.docx is not a JPEG, PNG or TIFF file"):
        archive_items(listing)


def test_an_empty_or_missing_archive_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SearchError, match="holds no JPEG, PNG or TIFF files"):
        archive_items(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="archive .*nowhere does not exist"):
        archive_items(tmp_path / "nowhere")
    (tmp_path / "list.txt").write_text("# nothing\n")
    with pytest.raises(SearchError, match="names no image"):
        archive_items(tmp_path / "list.txt")


def test_chips_cover_the_scene_with_the_overlap_asked_and_end_at_its_border() -> None:
    assert chip_offsets(100, 100, 0) == [0]
    assert chip_offsets(60, 100, 0) == [0]
    assert chip_offsets(300, 100, 0) == [0, 100, 200]
    assert chip_offsets(300, 100, 20) == [0, 80, 160, 200]  # the last one moved back to end at 300
    assert chip_offsets(250, 100, 0) == [0, 100, 150]


def test_a_scene_gives_chips_with_window_footprint_and_crs(tmp_path: Path) -> None:
    scene = write_synthetic_scene(tmp_path / "scene.tif", tiles=2, tile_size=48, pixel_size=2.0)
    items = archive_items(scene, chip=64, overlap=16)
    assert [item.window for item in items] == [(c, r, 64, 64) for r in (0, 32) for c in (0, 32)]
    last = items[-1]
    assert last.crs == "EPSG:32631"
    # pixel (32, 32) is 64 m east and 64 m south of the scene's corner at (500000, 5000000)
    assert last.footprint == ((500064.0, 4999936.0), (500192.0, 4999936.0), (500192.0, 4999808.0),
                              (500064.0, 4999808.0), (500064.0, 4999936.0))  # fmt: skip
    with rasterio.open(scene) as opened:
        expected = opened.read([1, 2, 3], window=rasterio.windows.Window(32, 32, 64, 64)).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(read_item(last)), expected)


def test_footprints_reach_geojson_in_longitude_latitude(tmp_path: Path) -> None:
    ring = footprint_lonlat(((500000.0, 5000000.0), (501000.0, 5000000.0), (501000.0, 4999000.0),
                             (500000.0, 4999000.0), (500000.0, 5000000.0)), "EPSG:32631")  # fmt: skip
    lon, lat = ring[0]
    assert lon == pytest.approx(3.0, abs=1e-9)  # easting 500 km is zone 31's central meridian, 3 degrees east
    assert 45.0 < lat < 45.3  # northing 5,000 km is about 45.1 degrees north
    assert ring[1][0] > lon and ring[3][1] < lat  # east is larger longitude, south smaller latitude
    assert ring[3][1] == pytest.approx(lat - 1000 / 111_132, abs=2e-4)  # a kilometre is about 1/111 of a degree


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the scene without one
def test_a_scene_without_crs_needs_no_geo_and_other_pixel_types_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=40, height=40, count=3, dtype="uint8") as out:
        out.write(np.zeros((3, 40, 40), np.uint8))
    with pytest.raises(SearchError, match=r"scene .*plain.tif has no CRS.*pass --no-geo"):
        archive_items(plain, chip=32)
    items = archive_items(plain, chip=32, geo=False)
    assert len(items) == 4 and all(item.crs is None and item.footprint is None for item in items)
    wide = tmp_path / "wide.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": "uint16", "crs": "EPSG:32631",
               "transform": from_origin(0, 0, 1, 1)}  # fmt: skip
    with rasterio.open(wide, "w", **profile) as out:
        out.write(np.zeros((1, 8, 8), np.uint16))
    with pytest.raises(SearchError, match="holds uint16 pixels; expected 8-bit"):
        archive_items(wide)
    with pytest.raises(SearchError, match="--overlap must be at least 0 and below --chip"):
        archive_items(plain, chip=32, overlap=32)


def test_the_synthetic_scene_is_deterministic(tmp_path: Path) -> None:
    one = write_synthetic_scene(tmp_path / "one.tif", tiles=2, tile_size=32)
    two = write_synthetic_scene(tmp_path / "two.tif", tiles=2, tile_size=32)
    with rasterio.open(one) as a, rasterio.open(two) as b:
        assert np.array_equal(a.read(), b.read()) and a.transform == b.transform and a.crs == b.crs
