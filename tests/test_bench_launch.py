"""The bench on many processes: a run under torchrun, runs side by side; neither changes a result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_helpers import bench_recipe

from harma_zoo.bench import launch
from harma_zoo.bench.runs import run_bench
from harma_zoo.cli import main


def _result(out: Path, run_id: str) -> dict:
    return json.loads((out / "runs" / run_id / "result.json").read_text())


def _step_losses(work_dir: Path) -> list[float]:
    (log,) = work_dir.glob("*/vis_data/scalars.json")
    return [record["loss"] for record in map(json.loads, log.read_text().splitlines()) if "loss" in record]


def test_a_run_on_two_processes_gives_the_one_process_result(tmp_path: Path) -> None:
    recipe = str(bench_recipe(tmp_path, "harma_tiny-vit_synth"))
    one = run_bench(recipes=[recipe], methods=["harma"], out=tmp_path / "one")
    two = run_bench(recipes=[recipe], methods=["harma"], out=tmp_path / "two", nproc_per_run=2)
    run_id = "harma_tiny-vit_synth__harma"
    assert one["ran"] == two["ran"] == [run_id] and not one["failed"] and not two["failed"]
    expected, result = _result(tmp_path / "one", run_id), _result(tmp_path / "two", run_id)
    assert result["config_sha256"] == expected["config_sha256"]
    assert result["best_epoch"] == expected["best_epoch"]
    assert result["metrics"]["val"] == pytest.approx(expected["metrics"]["val"])
    # every step's loss: each of the 2 processes had 8 rows, gathered into the global batch of 16
    losses = _step_losses(tmp_path / "two" / "runs" / run_id)
    assert len(losses) == 5
    assert losses == pytest.approx(_step_losses(tmp_path / "one" / "runs" / run_id), rel=1e-4)


def test_runs_side_by_side_give_the_leaderboard_of_runs_one_after_another(tmp_path: Path) -> None:
    recipes = [
        str(bench_recipe(tmp_path, "harma_tiny-vit_synth")),
        str(bench_recipe(tmp_path, "harma_tiny-sigmoid_synth", data__train="absent.json")),  # fails once it trains
    ]
    sequential = run_bench(recipes=recipes, methods=["frozen", "harma"], out=tmp_path / "sequential")
    parallel = run_bench(recipes=recipes, methods=["frozen", "harma"], out=tmp_path / "parallel", parallel_runs=2)
    broken = "harma_tiny-sigmoid_synth__harma"
    assert set(sequential["ran"]) == set(parallel["ran"]) and len(parallel["ran"]) == 3
    assert set(sequential["failed"]) == set(parallel["failed"]) == {broken}
    log = tmp_path / "parallel/runs" / broken / "bench.log"
    assert "absent.json" in log.read_text()
    assert parallel["failed"][broken]["logs"] == [log] and str(log) in parallel["failed"][broken]["error"]

    def board(out: Path) -> list[dict]:
        rows = json.loads((out / "leaderboard.json").read_text())["rows"]
        return [{key: value for key, value in row.items() if key != "wall_time_min"} for row in rows]

    assert board(tmp_path / "parallel") == board(tmp_path / "sequential")
    for run_id in parallel["ran"]:
        assert (tmp_path / "parallel/runs" / run_id / "bench.log").is_file()

    # side by side too, a finished run is not redone and an interrupted one resumes
    (tmp_path / "parallel/runs/harma_tiny-vit_synth__harma/result.json").unlink()
    again = run_bench(recipes=recipes[:1], methods=["frozen", "harma"], out=tmp_path / "parallel", parallel_runs=2)
    assert again["skipped"] == ["harma_tiny-vit_synth__frozen"] and again["ran"] == ["harma_tiny-vit_synth__harma"]
    resumed = _result(tmp_path / "parallel", "harma_tiny-vit_synth__harma")
    assert resumed["resumed"]
    assert resumed["metrics"] == _result(tmp_path / "sequential", "harma_tiny-vit_synth__harma")["metrics"]


def test_the_command_line_takes_processes_and_parallel_runs(tmp_path: Path) -> None:
    recipe = str(bench_recipe(tmp_path, "harma_tiny-vit_synth", schedule__batch_size=15))
    argv = ["bench", "--recipes", recipe, "--methods", "harma", "--out", str(tmp_path / "out")]
    assert main([*argv, "--nproc-per-run", "2"]) == 2  # 15 rows cannot be split over 2 processes
    assert not (tmp_path / "out" / "runs").exists()  # refused before anything ran
    assert main([*argv, "--parallel-runs", "0"]) == 2


def test_device_groups_are_disjoint_and_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert launch.device_groups(2, 3) == ["0,1,2", "3,4,5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert launch.device_groups(2, 2) == ["4,5", "6,7"]
    with pytest.raises(ValueError, match="need 6 GPUs; 4 are visible"):
        launch.device_groups(3, 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert launch.device_groups(3, 2) == [None, None, None]  # CPU: the runs share the cores
