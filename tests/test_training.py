"""Training on mmengine's Runner: checkpoints, selection on validation, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from engine_helpers import StopAfterEpoch, tiny_cfg
from safetensors.torch import load_file

from harma_zoo.engine.checkpoint import read_metadata
from harma_zoo.engine.recipe import build_recipe_model
from harma_zoo.engine.train import build_runner, lr_schedule, parameter_groups, train


def test_a_run_writes_adapter_checkpoints_selected_on_validation(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    best = train(cfg, tmp_path / "run")
    assert best["epoch"] in (1, 2) and best["metrics"]["mR"] == best["mR"]
    metadata = read_metadata(tmp_path / "run" / "best.safetensors")
    assert metadata["extra"]["selected_on"] == "val" and metadata["extra"]["epoch"] == best["epoch"]
    assert metadata["metrics"]["val"]["mR"] == pytest.approx(best["mR"])
    assert metadata["method"]["type"] == "harma" and metadata["recipe"] == "tiny_recipe"
    tensors = load_file(tmp_path / "run" / "best.safetensors")
    model = build_recipe_model(cfg)
    assert set(tensors) == {name for name, _ in model.trainable_parameters()}
    assert metadata["backbone_fingerprint"] == model.backbone_fingerprint
    assert not list((tmp_path / "run").glob(".*tmp"))  # atomic writes leave no temporary files
    resume_files = list((tmp_path / "run").glob("epoch_*.pth"))
    assert resume_files and resume_files[0].stat().st_size < 3_000_000  # trained tensors only, not the backbone


def _final_state(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "last.safetensors")


def test_resume_after_an_interruption_ends_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    train(cfg, tmp_path / "straight")

    runner = build_runner(cfg, tmp_path / "interrupted")
    runner.register_hook(StopAfterEpoch(1), priority="LOWEST")
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert (tmp_path / "interrupted" / "epoch_1.pth").is_file()
    assert not (tmp_path / "interrupted" / "epoch_2.pth").exists()
    build_runner(cfg, tmp_path / "interrupted", resume=True).train()

    straight, resumed = _final_state(tmp_path / "straight"), _final_state(tmp_path / "interrupted")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=1e-6, msg=name)
    first = read_metadata(tmp_path / "straight" / "last.safetensors")["metrics"]
    again = read_metadata(tmp_path / "interrupted" / "last.safetensors")["metrics"]
    assert first == again


def test_resume_refuses_a_checkpoint_of_another_backbone(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    runner = build_runner(cfg, tmp_path / "run")
    runner.register_hook(StopAfterEpoch(1), priority="LOWEST")
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    other = tiny_cfg(tmp_path, backbone={"type": "open_clip", "arch": "harma-tiny-vit"}, schedule__seed=8)
    with pytest.raises(ValueError, match="resume checkpoint was made on backbone"):
        build_runner(other, tmp_path / "run", resume=True).train()


def test_parameter_groups_decay_everything_but_biases(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path)
    model = build_recipe_model(cfg)
    decay, no_decay = parameter_groups(model, 0.04)
    names = {id(p): n for n, p in model.trainable_parameters()}
    assert decay["weight_decay"] == 0.04 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") for p in no_decay["params"])
    assert any(names[id(p)].endswith("in_proj_bias") for p in no_decay["params"])
    assert {names[id(p)] for p in decay["params"]} >= {"loss.contrastive.temperature", "method.adapters.image.0.gate"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def test_the_schedule_warms_up_then_decays_to_zero() -> None:
    linear = lr_schedule(100, 0.1, "linear")
    assert linear[0]["end"] == 10 and linear[1]["begin"] == 10 and linear[1]["end_factor"] == 0.0
    assert lr_schedule(100, 0.1, "cosine")[1]["type"] == "CosineAnnealingLR"
    with pytest.raises(ValueError, match="'linear' or 'cosine'"):
        lr_schedule(100, 0.1, "step")


def test_gradient_accumulation_steps_once_per_window(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, schedule__accumulation=2, schedule__epochs=1)
    runner = build_runner(cfg, tmp_path / "run")
    runner.train()
    steps = {float(state["step"]) for state in runner.optim_wrapper.optimizer.state.values()}
    assert steps == {float(math.ceil(len(runner.train_dataloader) / 2))}  # the last, shorter window steps too
    log = next((tmp_path / "run").glob("*/vis_data/scalars.json")).read_text().splitlines()
    assert any("loss" in json.loads(line) for line in log)
