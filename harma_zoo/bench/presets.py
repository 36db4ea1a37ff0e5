"""The built-in bench matrices, as data (kept apart from bench.py so the CLI can list them cheaply)."""

from __future__ import annotations

from typing import Any

TRANSFER_RECIPES = [
    f"{method}_tiny-vit-rsicd-source_rsicd" for method in ("frozen", "harma", "harma-paper", "lora", "adapter", "full")
]
# Presets as data. Overrides may name {out}, the bench output folder.
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "about": "the built-in default of `make demo`: small ViT, synthetic data the package draws, CPU minutes",
        "recipes": ["harma_small-vit_synthetic"],
        "methods": ["frozen", "harma", "full"],
        "cfg_options": {"data.root": "{out}/demo-data"},
    },
    "rsicd-transfer": {
        "about": "`make transfer`: the tiny ViT pretrained on half of RSICD's classes, fine-tuned to all of RSICD",
        "recipes": TRANSFER_RECIPES,
        "methods": ["recipe"],
        "seeds": [0, 1, 2],  # fresh seeds: the grid chose each rate on the recipe's seed (3407)
        "cfg_options": {},
    },
    "rsicd-transfer-tune": {
        "about": "`make transfer-tune`: the learning-rate grid of each rsicd-transfer method (its recipe's `tuning`)",
        "recipes": TRANSFER_RECIPES,
        "methods": ["recipe"],
        "tune": True,
        "cfg_options": {},
    },
}
