"""Which model made an index's vectors: its backbone fingerprint and its adapter's sha256.

Vectors of two models do not compare, so an index records the model that built it and
refuses to take vectors from another one, naming both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from harma_zoo.api import Pretrained, load_pretrained
from harma_zoo.hub.download import sha256_file
from harma_zoo.hub.index import load_index
from harma_zoo.search.errors import SearchError

__all__ = ["FORMAT", "ModelIdentity", "load_model"]

FORMAT = "harma-zoo-search-index/1"


@dataclass(frozen=True)
class ModelIdentity:
    """The model as given (a zoo name or an adapter file) and what makes its vectors its own."""

    model: str
    backbone_fingerprint: str
    adapter_sha256: str
    dim: int

    def describe(self) -> str:
        return (
            f"{self.model} (backbone fingerprint {self.backbone_fingerprint[:16]}..., "
            f"adapter sha256 {self.adapter_sha256[:16]}...)"
        )

    def same_vectors_as(self, other: ModelIdentity) -> bool:
        return (self.backbone_fingerprint, self.adapter_sha256, self.dim) == (
            other.backbone_fingerprint,
            other.adapter_sha256,
            other.dim,
        )

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> ModelIdentity:
        try:
            data: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as error:
            raise SearchError(f"{source} is not valid JSON ({error.msg}); the index folder is damaged") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise SearchError(f"{source} has format {found!r}, expected {FORMAT!r}")
        try:
            return cls(
                str(data["model"]), str(data["backbone_fingerprint"]), str(data["adapter_sha256"]), int(data["dim"])
            )
        except KeyError as error:
            raise SearchError(f"{source} has no key {error.args[0]!r}; the index folder is damaged") from None


def load_model(
    name_or_path: str | Path, device: torch.device | str | None = None, registry: str | Path | None = None
) -> tuple[Pretrained, ModelIdentity]:
    """``load_pretrained``'s model, transform and tokenizer, with the identity its vectors will carry."""
    pretrained = load_pretrained(name_or_path, device=device, registry=registry)
    path = Path(name_or_path)
    if path.is_file():  # recorded absolute, so that a search from another folder finds it again
        name, sha256 = str(path.resolve()), sha256_file(path)
    else:
        name, sha256 = str(name_or_path), load_index(registry).checkpoint(str(name_or_path)).sha256
    with torch.no_grad():
        dim = int(pretrained.model.encode_text(pretrained.tokenizer([""])).shape[1])
    return pretrained, ModelIdentity(name, pretrained.model.backbone_fingerprint, sha256, dim)
