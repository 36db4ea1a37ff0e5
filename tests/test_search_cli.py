"""``harma-zoo index`` and ``search`` as a user runs them: tables, JSON, GeoJSON, one-line errors, a real SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from search_helpers import OTHER, TRANSFER, harma_zoo_command, write_archive

from harma_zoo.cli import main
from harma_zoo.search import SearchIndex, index_archive, write_synthetic_scene


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One zoo cache for the module; a wide terminal, so that tables do not fold paths."""
    home = tmp_path_factory.mktemp("zoo-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARMA_ZOO_HOME", str(home))
        patch.delenv("HARMA_ZOO_REGISTRY", raising=False)
        patch.setenv("COLUMNS", "250")
        yield home


@pytest.fixture(scope="module")
def scene_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scene")
    scene = write_synthetic_scene(folder / "scene.tif", tiles=2, tile_size=64)
    out = folder / "index"
    assert main(["index", str(scene), "--model", TRANSFER, "--out", str(out), "--chip", "64", "--overlap", "32",
                 "--workers", "1"]) == 0  # fmt: skip
    return out


def test_index_and_search_print_a_summary_a_table_json_and_geojson(
    scene_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["index", str(scene_index.parent / "scene.tif"), "--model", TRANSFER, "--out", str(scene_index),
                 "--chip", "64", "--overlap", "32", "--workers", "0"]) == 0  # fmt: skip
    assert f"index {scene_index}: 9 vectors (9 kept, 0 new, 0 changed, 0 removed" in capsys.readouterr().out

    geojson = tmp_path / "hits.geojson"
    assert main(["search", str(scene_index), "white storage tanks", "-k", "3", "--geojson", str(geojson)]) == 0
    out = capsys.readouterr().out
    assert "'white storage tanks'" in out and str(scene_index.parent / "scene.tif") in out and "col 32, row 0" in out
    collection = json.loads(geojson.read_text())
    assert [feature["properties"]["rank"] for feature in collection["features"]] == [1, 2, 3]
    ring = collection["features"][0]["geometry"]["coordinates"][0]
    assert len(ring) == 5 and all(3.0 - 1e-9 < lon < 3.01 and 45.0 < lat < 45.3 for lon, lat in ring)  # UTM 31N
    assert collection["features"][0]["properties"]["path"].endswith("scene.tif")

    SearchIndex(scene_index).image(4).save(tmp_path / "chip.png")  # id 4: the middle chip (col 32, row 32)
    assert main(["search", str(scene_index), "--image", str(tmp_path / "chip.png"), "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [hit["rank"] for hit in hits] == [1, 2] and hits[0]["window"] == [32, 32, 64, 64]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5) and hits[0]["score"] >= hits[1]["score"]


def test_bad_input_gets_one_clear_line(scene_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    before = (scene_index / "manifest.parquet").read_bytes()
    cases = {
        ("index", str(tmp_path / "empty"), "--model", TRANSFER, "--out", str(tmp_path / "i")): "holds no JPEG, PNG",
        ("index", str(tmp_path / "bad.png"), "--model", OTHER, "--out", str(scene_index)): f"--model {OTHER}",
        ("search", str(tmp_path / "nowhere"), "planes"): "index folder .*nowhere does not exist",
        ("search", str(tmp_path), "planes"): "is not a harma-zoo search index",
        ("search", str(scene_index), "--image", str(tmp_path / "bad.png")): "cannot decode image file .*bad.png",
        ("search", str(scene_index)): "give a sentence",
    }
    for args, expected in cases.items():
        assert main(list(args)) == 2, args
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(expected, lines[0]), (args, lines)
    assert not (tmp_path / "i" / "identity.json").exists()
    assert (scene_index / "manifest.parquet").read_bytes() == before


def _indexed(folder: Path) -> tuple[list[dict], np.ndarray]:
    return pq.read_table(folder / "manifest.parquet").to_pylist(), np.array(SearchIndex(folder).vectors)


def test_a_killed_run_resumes_to_the_index_an_uninterrupted_run_makes(tmp_path: Path, home: Path) -> None:
    images = write_archive(tmp_path / "archive", 240, size=48)
    half, full = tmp_path / "half.txt", tmp_path / "full.txt"
    half.write_text("".join(f"{p}\n" for p in images[:40]))
    full.write_text("".join(f"{p}\n" for p in images))
    options = {"batch_size": 8, "shard_size": 8, "workers": 1, "progress": False}
    for listing in (half, full):
        index_archive(listing, TRANSFER, tmp_path / "reference", **options)
    interrupted = tmp_path / "interrupted"
    index_archive(half, TRANSFER, interrupted, **options)
    committed = (interrupted / "manifest.parquet").read_bytes()

    arguments = ["index", str(full), "--model", TRANSFER, "--out", str(interrupted), "--batch-size", "8",
                 "--shard-size", "8", "--workers", "1"]  # fmt: skip
    command = [sys.executable, "-m", "harma_zoo.cli", *arguments]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True, **quiet)
    deadline = time.monotonic() + 300
    while len(list((interrupted / "shards").glob("*.parquet"))) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "no shard was committed in 300 s"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # its DataLoader worker too, if it is still there
    shards = len(list((interrupted / "shards").glob("*.parquet")))
    assert 3 <= shards < 25  # killed mid-run: some of the 25 batches committed, not all

    # The killed run left the committed index as it was: it opens and searches.
    assert (interrupted / "manifest.parquet").read_bytes() == committed
    assert len(SearchIndex(interrupted)) == 40

    done = harma_zoo_command(*arguments, home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{shards * 8} taken from an interrupted run" in done.stdout.replace(",", "")
    assert not list((interrupted / "shards").iterdir())  # merged and gone

    expected_rows, expected_vectors = _indexed(tmp_path / "reference")
    rows, vectors = _indexed(interrupted)
    assert rows == expected_rows  # same ids, paths, sizes, mtimes, in the same order
    assert [row["id"] for row in rows] == list(range(240))
    assert np.array_equal(vectors, expected_vectors)  # the plan's batches, whoever embedded them
