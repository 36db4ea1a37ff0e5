"""A tiny recipe on a tiny synthetic dataset, written where a test wants it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmengine.hooks import Hook

from harma_zoo.engine.recipe import load_recipe

BENCH_DATA = {"train_images": 16, "val_images": 8, "size": 32, "seed": 0}
BENCH_ARCHS = {"harma_tiny-vit_synth": "harma-tiny-vit", "harma_tiny-sigmoid_synth": "harma-tiny-sigmoid"}


def bench_recipe(folder: Path, name: str, **changes: Any) -> Path:
    """A tiny recipe file named ``name`` (its name gives the bench's run ids), on data shared by all of them:
    16 images x 5 captions, batch 16, one epoch (5 steps)."""
    path = write_recipe(
        folder / name,
        backbone={"type": "open_clip", "arch": BENCH_ARCHS[name]},
        data__root=str(folder / "data"),
        data__synthetic=BENCH_DATA,
        **{"schedule__epochs": 1, "schedule__batch_size": 16, **changes},
    )
    return path.rename(path.with_name(f"{name}.py"))


def write_recipe(folder: Path, **changes: Any) -> Path:
    """A complete recipe file (no _base_) training HarMA on the tiny ViT for a few seconds."""
    sections: dict[str, dict[str, Any]] = {
        "backbone": {"type": "open_clip", "arch": "harma-tiny-vit"},
        "method": {"type": "harma", "bottleneck": 16, "shared_width": 8, "heads": 2},
        "loss": {"type": "harma"},
        "data": {
            "reader": "harma_json",
            "root": str(folder / "data"),
            "synthetic": {"train_images": 24, "val_images": 8, "size": 32, "seed": 0},
            "image_root": "",
            "train": "train.json",
            "val": "val.json",
            "max_words": 30,
        },
        "schedule": {
            "epochs": 2,
            "batch_size": 8,
            "accumulation": 1,
            "lr": 1e-3,
            "weight_decay": 0.04,
            "betas": [0.9, 0.98],
            "eps": 1e-8,
            "warmup_ratio": 0.1,
            "decay": "linear",
            "amp": False,
            "seed": 7,
            "num_workers": 0,
            "val_interval": 1,
            "val_batch_size": 16,
            "log_interval": 1,
        },
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            sections[section][field] = value
        else:
            sections[section] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_recipe.py"
    path.write_text("".join(f"{name} = {value!r}\n" for name, value in sections.items()))
    return path


def tiny_cfg(folder: Path, **changes: Any):
    return load_recipe(write_recipe(folder, **changes))


class StopAfterEpoch(Hook):
    """Interrupts a run after the given epoch, once its resume checkpoint is written (register it LOWEST)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 == self.epoch:
            raise KeyboardInterrupt("stopped by the test")
