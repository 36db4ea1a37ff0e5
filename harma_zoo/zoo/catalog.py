"""What ``harma-zoo list`` shows: registry entries and recipes as plain rows, filtered.

Every row is a JSON-ready dict; the command line renders the same rows as tables, so the zoo
tables are generated from ``registry/`` and ``recipes/``, never written by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harma_zoo.hub.index import ZooIndex, entry_dict, match_backbone
from harma_zoo.resources import project_folder


@dataclass(frozen=True)
class Filters:
    """Which rows to keep; None keeps all. ``text`` is a case-insensitive substring of the whole row."""

    family: str | None = None
    method: str | None = None
    dataset: str | None = None
    backbone: str | None = None
    text: str | None = None

    def keep(self, row: dict[str, Any]) -> bool:
        wanted = {"family": self.family, "method": self.method, "dataset": self.dataset, "backbone": self.backbone}
        for key, value in wanted.items():
            if value is not None and str(row.get(key, "")).lower() != value.lower():
                return False
        return self.text is None or self.text.lower() in json.dumps(row, default=str).lower()


def backbone_rows(index: ZooIndex, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """One row per backbone entry: the entry's fields. ``--backbone`` filters by name."""
    if filters.method is not None or filters.dataset is not None:
        raise ValueError("backbones have no method or dataset: filter them by family, name or text")
    rows = [entry_dict(entry) for entry in index.backbones.values()]
    return [row for row in rows if filters.keep({**row, "backbone": row["name"]})]


def checkpoint_rows(index: ZooIndex, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """One row per checkpoint entry: its fields plus ``family``, and ``method``/``dataset`` as names."""
    rows = []
    for entry in index.checkpoints.values():
        row = entry_dict(entry)
        keyed = {
            **row,
            "family": index.backbones[entry.backbone].family,
            "method": entry.method["type"],
            "dataset": entry.dataset["name"],
        }
        if filters.keep(keyed):
            rows.append(row | {"family": keyed["family"]})
    return rows


def recipe_summary(path: Path, index: ZooIndex | None = None) -> dict[str, Any]:
    """Name, backbone (config and the registry entry it is), method, dataset and schedule of a recipe file."""
    from harma_zoo.engine.recipe import dataset_name, load_recipe  # mmengine config parsing: only when listed

    cfg = load_recipe(path)
    backbone = cfg.backbone.to_dict()
    entry = match_backbone(index, backbone) if index is not None else None
    return {
        "name": path.stem,
        "path": str(path),
        "family": backbone.get("type"),
        "backbone": entry.name if entry else None,
        "backbone_config": backbone,
        "method": cfg.method.get("type"),
        "method_config": cfg.method.to_dict(),
        "dataset": dataset_name(cfg.data.to_dict()),
        "epochs": cfg.schedule.get("epochs"),
        "lr": cfg.schedule.get("lr"),
    }


def recipe_rows(
    index: ZooIndex | None = None, filters: Filters = Filters(), folder: str | Path | None = None
) -> list[dict[str, Any]]:
    """A summary of every recipe in ``folder`` (default: the project's ``recipes/``), filtered."""
    folder = Path(folder) if folder is not None else project_folder("recipes")
    rows = [recipe_summary(path, index) for path in sorted(folder.glob("*.py"))]
    return [row for row in rows if filters.keep(row)]
