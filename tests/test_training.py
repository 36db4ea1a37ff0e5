"""Training on mmengine's Runner: checkpoints, selection on validation, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from engine_helpers import StopAfterEpoch, tiny_cfg
from mmengine.hooks import Hook
from mmengine.registry import PARAM_SCHEDULERS
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


def _rates(total_iters: int, warmup_ratio: float, decay: str) -> list[float]:
    """The learning rate at each iteration, with mmengine's schedulers stepped as its Runner steps them."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedulers = [
        PARAM_SCHEDULERS.build(dict(config, optimizer=optimizer))
        for config in lr_schedule(total_iters, warmup_ratio, decay)
    ]
    rates = []
    for _ in range(total_iters):
        rates.append(optimizer.param_groups[0]["lr"])
        for scheduler in schedulers:
            scheduler.step()
    return rates


@pytest.mark.parametrize("total", [2, 3, 5, 10, 14, 100, 1843])
@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_the_warm_up_ends_at_the_base_rate_at_its_stated_iteration(total: int, decay: str) -> None:
    rates = _rates(total, 0.1, decay)
    warmup = min(max(1, round(0.1 * total)), total - 1)
    assert rates[0] == pytest.approx(1e-3)
    assert rates[warmup] == pytest.approx(1.0)  # the base rate, however short the run
    assert max(rates) == pytest.approx(1.0)
    assert all(a < b for a, b in zip(rates[: warmup + 1], rates[1 : warmup + 1], strict=False))  # rising
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1 :], strict=False))  # then falling
    if total > warmup + 1:
        assert rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_no_warm_up_starts_at_the_base_rate() -> None:
    rates = _rates(10, 0.0, "linear")
    assert rates[0] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="'linear' or 'cosine'"):
        lr_schedule(100, 0.1, "step")


class _RecordRates(Hook):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.rates.append(runner.optim_wrapper.get_lr()["lr"][0])


def test_a_five_iteration_run_reaches_the_base_rate_and_trains_the_adapter(tmp_path: Path) -> None:
    # 24 synthetic images x 5 captions = 120 rows; batch 24 -> 5 iterations in one epoch
    cfg = tiny_cfg(tmp_path, schedule__epochs=1, schedule__batch_size=24, schedule__lr=1e-3)
    runner = build_runner(cfg, tmp_path / "run")
    record = _RecordRates()
    runner.register_hook(record)
    adapter = runner.model.retrieval.method
    before = {name: p.detach().clone() for name, p in adapter.named_parameters()}
    runner.train()
    assert len(record.rates) == 5
    assert max(record.rates) == pytest.approx(1e-3)
    up = adapter.adapters["image"]["0"].up.weight
    assert not torch.equal(up, before["adapters.image.0.up.weight"])  # zero-initialised, now trained


def test_gradient_accumulation_steps_once_per_window(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, schedule__accumulation=2, schedule__epochs=1)
    runner = build_runner(cfg, tmp_path / "run")
    runner.train()
    steps = {float(state["step"]) for state in runner.optim_wrapper.optimizer.state.values()}
    assert steps == {float(math.ceil(len(runner.train_dataloader) / 2))}  # the last, shorter window steps too
    log = next((tmp_path / "run").glob("*/vis_data/scalars.json")).read_text().splitlines()
    assert any("loss" in json.loads(line) for line in log)
