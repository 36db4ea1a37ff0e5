"""Reading a recipe: its config file, command-line overrides, and the data splits it names."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.dist import barrier, is_main_process
from mmengine.runner import set_random_seed

from harma_zoo.data.annotations import Annotations
from harma_zoo.data.images import check_images
from harma_zoo.data.synthetic import write_synthetic_dataset
from harma_zoo.model import RetrievalModel, build_model
from harma_zoo.plugins import PluginError
from harma_zoo.registry import READERS, get_class

REQUIRED = ("backbone", "method", "data", "schedule")

logger = logging.getLogger(__name__)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The recipe at ``path`` with ``key.sub=value`` overrides merged in; checks its sections.

    A recipe's ``custom_imports = dict(imports=[...], allow_failed_imports=False)`` (its own or a
    ``_base_``'s) are imported here, so the plug-ins it names are registered before anything is built.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    try:
        cfg = Config.fromfile(str(path))  # imports the recipe's custom_imports (mmengine does)
    except ImportError as error:
        raise PluginError(f"recipe {path}: {_import_failure(error)}") from error
    if overrides:
        cfg.merge_from_dict(overrides)
    missing = [key for key in REQUIRED if key not in cfg]
    if missing:
        raise KeyError(f"recipe {path} lacks section(s) {', '.join(missing)}")
    cfg.setdefault("loss", {"type": "harma"})
    cfg.setdefault("name", path.stem)
    return cfg


def _import_failure(error: ImportError) -> str:
    """The first line of mmengine's message and the import's own error (mmengine's goes on with sys.path)."""
    inner = error.__cause__ or error
    cause = inner.__cause__ or inner.__context__
    first = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return f"{first} ({type(cause).__name__}: {cause})" if cause is not None else first


def build_recipe_model(cfg: Config) -> RetrievalModel:
    """The recipe's model, built right after seeding with the recipe's seed.

    Random initialisations (tiny backbones, adapters) are then the same in training
    and in every later evaluation, so the backbone fingerprint in a checkpoint matches.
    """
    # Frozen random or small weights produce subnormal floats that slow CPU math ~20x; every run and
    # evaluation builds its model here, so this is where they are flushed, before any compute starts.
    torch.set_flush_denormal(True)
    set_random_seed(cfg.schedule.seed)
    return build_model(cfg.backbone, cfg.method, cfg.get("loss"))


def split_paths(cfg: Config, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of a split, relative paths taken from ``data.root``."""
    data = cfg.data
    if not data.get(split):
        raise KeyError(f"recipe {cfg.name} defines no {split!r} split (data.{split})")
    root = Path(data.root)
    return root / data[split], root / data.get("image_root", "")


def load_split(cfg: Config, split: str) -> Annotations:
    """Read and check one split; unreadable images are skipped and counted if the recipe allows.

    A recipe whose ``data.synthetic`` holds generator options draws the built-in
    synthetic dataset into ``data.root`` first (nothing is redrawn when it is there).
    """
    if cfg.data.get("synthetic"):
        if is_main_process():  # one process draws, the others wait for the finished files
            write_synthetic_dataset(cfg.data.root, **cfg.data.synthetic)
        barrier()
    annotation_file, image_root = split_paths(cfg, split)
    reader = get_class(READERS, cfg.data.reader)
    annotations = reader(annotation_file, image_root=image_root, split=cfg.data.get(f"{split}_split"))
    if cfg.data.get(f"{split}_classes"):
        annotations = annotations.of_classes(cfg.data[f"{split}_classes"])
    annotations, skipped = check_images(annotations, skip_unreadable=cfg.data.get("skip_unreadable", False))
    if skipped:
        logger.warning(
            "%s: skipped %d unreadable image(s), e.g. %s", annotation_file, len(skipped), ", ".join(skipped[:3])
        )
    return annotations


def save_info(cfg: Config, train: Annotations, val: Annotations) -> dict[str, Any]:
    """What an adapter checkpoint records about the run that made it."""
    return {
        "backbone": cfg.backbone.to_dict(),
        "method": cfg.method.to_dict(),
        "loss": dict(cfg.loss),
        "recipe": cfg.name,
        "seed": cfg.schedule.seed,
        "dataset": {
            "reader": cfg.data.reader,
            "train": str(cfg.data.train),
            "val": str(cfg.data.val),
            "train_images": len(train.images),
            "train_captions": len(train.captions),
            "val_images": len(val.images),
            "selected_on": "val",
        },
    }
