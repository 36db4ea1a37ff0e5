"""Several processes through torchrun (gloo, CPU) train like one process with their summed batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine_helpers import write_recipe


def _first_step_loss(work_dir: Path) -> float:
    log = next(work_dir.glob("*/vis_data/scalars.json")).read_text().splitlines()
    first = next(json.loads(line) for line in log if "loss" in json.loads(line))
    assert first["step"] == 1
    return first["loss"]


def _train(tmp_path: Path, name: str, batch_size: int, processes: int) -> float:
    recipe = write_recipe(tmp_path / name, schedule__batch_size=batch_size, schedule__epochs=1)
    work_dir = tmp_path / name / "run"
    train = ["-m", "harma_zoo.cli", "train", str(recipe), "--work-dir", str(work_dir)]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [sys.executable, *launcher, *train, "--launcher", "pytorch"]
    else:
        command = [sys.executable, *train]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return _first_step_loss(work_dir)


def test_two_processes_with_batch_b_match_one_process_with_batch_2b(tmp_path: Path) -> None:
    one = _train(tmp_path, "one", batch_size=8, processes=1)
    two = _train(tmp_path, "two", batch_size=4, processes=2)
    assert abs(one - two) <= 1e-4 * max(1.0, abs(one)), (one, two)
