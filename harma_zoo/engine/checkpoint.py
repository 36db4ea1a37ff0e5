"""Adapter checkpoints: only what was trained, as safetensors, with metadata in the header.

The header records the backbone (config and a fingerprint of its weights), the
method and its options, the loss, the recipe, the dataset, the metrics and the
toolkit version. Loading checks the fingerprint and the method, and refuses any
mismatch or any missing/unexpected tensor with a message naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from harma_zoo import __version__
from harma_zoo.fileio import atomic_write
from harma_zoo.model import RetrievalModel, resolved_method
from harma_zoo.plaindata import as_json_data

FORMAT = "harma-zoo-adapter/1"
JSON_FIELDS = ("backbone", "method", "loss", "metrics", "dataset", "extra", "seed")


def trainable_state(model: RetrievalModel) -> dict[str, torch.Tensor]:
    """The trained tensors by name; a parameter shared by two modules appears once."""
    return {name: p.detach().cpu().contiguous() for name, p in model.trainable_parameters()}


def save_adapter(
    model: RetrievalModel,
    path: str | Path,
    *,
    backbone: dict[str, Any],
    method: dict[str, Any],
    loss: dict[str, Any],
    recipe: str = "",
    dataset: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    seed: int | None = None,
) -> Path:
    """Write the trained tensors of ``model`` and the run's metadata to ``path`` atomically.

    ``seed`` is the run's seed: a backbone with random weights is rebuilt from it when loaded.
    """
    metadata = {
        "format": FORMAT,
        "toolkit_version": __version__,
        "backbone_fingerprint": model.backbone_fingerprint,
        "recipe": recipe,
        "backbone": json.dumps(backbone, sort_keys=True, default=list),
        "method": json.dumps(method, sort_keys=True, default=list),
        "loss": json.dumps(loss, sort_keys=True, default=list),
        "dataset": json.dumps(dataset or {}, sort_keys=True, default=list),
        "metrics": json.dumps(metrics or {}, sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True, default=list),
        "seed": json.dumps(seed),
    }
    path = Path(path)
    tensors = trainable_state(model)
    atomic_write(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata, JSON fields decoded; an unreadable file names itself."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise ValueError(f"{path}: not a safetensors adapter checkpoint ({error})") from error
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
    return {key: json.loads(value) if key in JSON_FIELDS else value for key, value in raw.items()}


def same_method(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two method configs are one method: compared with every default filled in (``blocks=None``
    written out equals ``blocks`` left out); options a method does not know are compared as written."""
    try:
        return resolved_method(one) == resolved_method(other)
    except (KeyError, TypeError, ValueError):
        return as_json_data(one) == as_json_data(other)


def load_adapter(model: RetrievalModel, path: str | Path, method: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load an adapter checkpoint into ``model`` after checking it belongs there; returns its metadata."""
    path = Path(path)
    metadata = read_metadata(path)
    if metadata["backbone_fingerprint"] != model.backbone_fingerprint:
        raise ValueError(
            f"{path} was trained on backbone weights with fingerprint {metadata['backbone_fingerprint'][:16]}..., "
            f"but this backbone's fingerprint is {model.backbone_fingerprint[:16]}... "
            f"(checkpoint backbone: {metadata['backbone']})"
        )
    if method is not None and not same_method(method, metadata["method"]):
        raise ValueError(
            f"{path} holds method {metadata['method']}, but the model was built with {as_json_data(method)}"
        )
    expected = dict(model.trainable_parameters())
    with safe_open(str(path), framework="pt") as handle:
        names = set(handle.keys())
        missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
        if missing or unexpected:
            raise ValueError(f"{path}: tensors missing {missing[:5]} / unexpected {unexpected[:5]} for this model")
        with torch.no_grad():
            for name in names:
                tensor = handle.get_tensor(name)
                if tensor.shape != expected[name].shape:
                    raise ValueError(
                        f"{path}: {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
                    )
                expected[name].copy_(tensor)
    return metadata
