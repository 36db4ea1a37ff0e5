"""Archives, models and command lines that the search tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from harma_zoo.data.synthetic import draw_scene, scenes_for

TRANSFER = "harma_tiny-vit-rsicd-source_rsicd"  # the published RSICD adapter (zoo_files/, offline)
OTHER = "lora_tiny-vit-rsicd-source_rsicd"  # another published adapter on the same backbone


def write_archive(folder: Path, count: int, size: int = 64, seed: int = 0, start: int = 0) -> list[Path]:
    """``count`` synthetic aerial images, PNG and JPEG, half of them in a subfolder."""
    rng = np.random.default_rng([seed, start])
    paths = []
    for i, scene in enumerate(scenes_for(start + count, seed)[start:], start=start):
        path = folder / ("sub" if i % 2 else "") / f"image{i:04d}.{'jpg' if i % 3 == 0 else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_scene(scene, size, rng).save(path)
        paths.append(path)
    return paths


def harma_zoo_command(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``harma-zoo ARGS`` in a fresh interpreter, with its zoo cache in ``home``."""
    env = {**os.environ, "HARMA_ZOO_HOME": str(home), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "harma_zoo.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
