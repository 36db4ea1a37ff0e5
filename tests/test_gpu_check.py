"""benchmarks/gpu_check.py: ready to run on a GPU, loud where it cannot run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PROJECT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT / "benchmarks" / "gpu_check.py"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="here the check would run for real")
def test_without_a_gpu_the_check_refuses_to_run_and_says_so(tmp_path: Path) -> None:
    done = _run("--out", str(tmp_path / "check.json"), timeout=600)
    assert done.returncode == 2
    assert "no CUDA device" in done.stdout and "has NOT run" in done.stdout
    assert not (tmp_path / "check.json").exists()


@pytest.mark.slow
def test_the_check_runs_end_to_end_on_cpu_in_smoke_mode(tmp_path: Path) -> None:
    """The script's own code, every check (AMP needs CUDA and says so), on the tiny backbone."""
    done = _run("--smoke", "--out", str(tmp_path / "check.json"), timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "check.json").read_text())
    statuses = {name: check["status"] for name, check in report["checks"].items()}
    assert statuses == {
        "amp": "skipped",
        "chunked": "passed",
        "evaluation": "passed",
        "compile": "passed",
        "compile_chunked": "passed",
    }
    assert report["checks"]["chunked"]["dropout_replay_grad_difference"] <= 1e-4


@pytest.mark.needs_gpu
def test_the_gpu_check_passes(tmp_path: Path) -> None:
    done = _run("--out", str(tmp_path / "check.json"), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
