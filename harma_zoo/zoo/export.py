"""A fully trained run's backbone as a zoo backbone: the weights file and the registry entry it needs.

Why: a backbone pretrained here (``full`` from random weights) is what adapters are then
trained on; publishing it as a file with its sha256 lets every later run fetch and verify it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmengine.config import Config

from harma_zoo.engine.evaluation import build_for_evaluation
from harma_zoo.hub.download import sha256_file

# Methods whose checkpoints hold the whole backbone; the others keep it frozen, so there is nothing to export.
EXPORTABLE_METHODS = ("full",)


def export_backbone(cfg: Config, checkpoint: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the backbone of ``cfg`` with ``checkpoint`` loaded to ``out``; return a ``backbones.yaml`` entry.

    The weights are what the family's ``save_weights`` writes, and the entry's ``architecture`` the
    options that load them back (``export_options``), so ``zoo:NAME`` of the entry builds this very
    backbone. The entry's ``weights.source`` is ``out`` as given (a project-relative ``zoo_files/...``
    path is what a ``file`` entry wants); ``name``, ``license`` and ``citation`` are left for the author.
    """
    method = cfg.method.get("type")
    if method not in EXPORTABLE_METHODS:
        raise ValueError(
            f"{checkpoint}: method {method!r} trains adapters and leaves the backbone's weights as they were; "
            f"only checkpoints of {', '.join(EXPORTABLE_METHODS)} hold a new backbone (publish adapters instead)"
        )
    model, _ = build_for_evaluation(cfg, checkpoint)
    path = model.backbone.save_weights(out)
    return {
        "family": cfg.backbone.type,
        "architecture": model.backbone.export_options(),
        "weights": {"kind": "file", "source": Path(out).as_posix(), "sha256": sha256_file(path)},
        "size": path.stat().st_size,
    }
