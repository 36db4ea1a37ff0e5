"""torchrun shards an archive across processes (gloo on CPU): the merged index is the one-process index."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from search_helpers import TRANSFER, write_archive

from harma_zoo.search import SearchIndex, write_synthetic_scene


def _index(archive: Path, out: Path, home: Path, processes: int) -> str:
    arguments = ["-m", "harma_zoo.cli", "index", str(archive), "--model", TRANSFER, "--out", str(out),
                 "--batch-size", "4", "--chip", "64", "--workers", "1", "--shard-size", "4"]  # fmt: skip
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HARMA_ZOO_HOME": str(home)}
    done = subprocess.run([sys.executable, *launcher, *arguments], capture_output=True, text=True, env=environment,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_two_gloo_processes_make_the_index_one_process_makes(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_archive(archive, 21)
    write_synthetic_scene(archive / "scene.tif", tiles=2, tile_size=64, seed=3)
    one = _index(archive, tmp_path / "one", tmp_path / "home", processes=1)
    two = _index(archive, tmp_path / "two", tmp_path / "home", processes=2)
    assert "25 vectors" in one and "merged" not in one
    assert two.count("25 vectors") == 1 and "merged the shards of 2 processes" in two  # process 0 reports for both
    rows_one = pq.read_table(tmp_path / "one" / "manifest.parquet").to_pylist()
    rows_two = pq.read_table(tmp_path / "two" / "manifest.parquet").to_pylist()
    assert rows_two == rows_one and [row["id"] for row in rows_one] == list(range(25))
    vectors_one = np.asarray(SearchIndex(tmp_path / "one").vectors)
    vectors_two = np.asarray(SearchIndex(tmp_path / "two").vectors)
    assert np.abs(vectors_two - vectors_one).max() <= 1e-6
    assert not list((tmp_path / "two" / "shards").iterdir())  # both processes' shards merged into one index
