"""The built-in bench matrices, as data (kept apart from bench.py so the CLI can list them cheaply)."""

from __future__ import annotations

from typing import Any

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
        "recipes": [
            f"{method}_tiny-vit-rsicd-source_rsicd"
            for method in ("frozen", "harma", "harma-paper", "lora", "adapter", "full")
        ],
        "methods": ["recipe"],
        "cfg_options": {},
    },
}
