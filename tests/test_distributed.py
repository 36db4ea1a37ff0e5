"""Several processes through torchrun (gloo, CPU) train like one process with their summed batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import write_recipe

from harma_zoo.engine.checkpoint import read_metadata


def _step_losses(work_dir: Path) -> list[float]:
    log = next(work_dir.glob("*/vis_data/scalars.json")).read_text().splitlines()
    records = [record for record in map(json.loads, log) if "loss" in record]
    assert [record["step"] for record in records] == list(range(1, len(records) + 1))
    return [record["loss"] for record in records]


def _train(folder: Path, batch_size: int, processes: int, **changes) -> Path:
    """Train the tiny recipe for one epoch (15 steps of 8 rows in all); returns the work dir."""
    recipe = write_recipe(folder, schedule__batch_size=batch_size, schedule__epochs=1, **changes)
    work_dir = folder / "run"
    train = ["-m", "harma_zoo.cli", "train", str(recipe), "--work-dir", str(work_dir)]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [sys.executable, *launcher, *train, "--launcher", "pytorch"]
    else:
        command = [sys.executable, *train]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work_dir


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("one"), batch_size=8, processes=1)


def test_two_processes_with_batch_b_match_one_process_with_batch_2b(one_process: Path, tmp_path: Path) -> None:
    one = _step_losses(one_process)[0]
    two = _step_losses(_train(tmp_path, batch_size=4, processes=2))[0]
    assert abs(one - two) <= 1e-4 * max(1.0, abs(one)), (one, two)


def test_two_chunked_processes_train_as_one_unchunked_process_with_their_batch(
    one_process: Path, tmp_path: Path
) -> None:
    """Chunks (3 + 1 rows per process) composed with the cross-process gather: every step's loss, the
    validation after the epoch. Losses after the first step follow from every update before them."""
    two = _train(tmp_path, batch_size=4, processes=2, schedule__chunk_size=3)
    expected, losses = _step_losses(one_process), _step_losses(two)
    assert len(losses) == len(expected) == 15
    assert losses == pytest.approx(expected, rel=1e-4)
    metrics = read_metadata(two / "last.safetensors")["metrics"]["val"]
    assert metrics == pytest.approx(read_metadata(one_process / "last.safetensors")["metrics"]["val"])
