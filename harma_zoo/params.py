"""Parameter counts of a retrieval model by tower and module kind."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

from harma_zoo.model import RetrievalModel


@dataclass(frozen=True)
class ParameterRow:
    tower: str
    kind: str
    total: int
    trainable: int


def _group(model: RetrievalModel, name: str) -> tuple[str, str]:
    part, _, rest = name.partition(".")
    if part == "backbone":
        return model.backbone.tower_of(rest), model.method.backbone_parameter_kind(rest)
    if part == "method":
        return model.method.parameter_group(rest)
    return "other", "temperature" if "temperature" in rest else part


def parameter_rows(model: RetrievalModel) -> list[ParameterRow]:
    """One row per (tower, kind); a parameter shared by several modules is counted once."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for name, parameter in model.named_parameters():
        counts = totals[_group(model, name)]
        counts[0] += parameter.numel()
        counts[1] += parameter.numel() if parameter.requires_grad else 0
    order = {"image": 0, "text": 1, "shared": 2, "other": 3}
    keys = sorted(totals, key=lambda key: (order.get(key[0], 4), key[0], key[1] != "backbone", key[1]))
    return [ParameterRow(tower, kind, *totals[(tower, kind)]) for tower, kind in keys]


def parameter_summary(model: RetrievalModel) -> dict:
    """Rows plus totals, in the JSON shape ``harma-zoo params --json`` prints."""
    rows = parameter_rows(model)
    total = sum(row.total for row in rows)
    trainable = sum(row.trainable for row in rows)
    backbone = sum(row.total for row in rows if row.kind == "backbone")
    return {
        "rows": [asdict(row) for row in rows],
        "total": total,
        "trainable": trainable,
        "backbone_parameters": backbone,
        "trainable_percent_of_backbone": 100.0 * trainable / backbone if backbone else 0.0,
    }
