"""The public Python API: from a zoo name (or an adapter file) to a working model in one call.

In the manner of open_clip's ``create_model_and_transforms`` and peft's ``from_pretrained``:
``load_pretrained`` fetches the adapter into the zoo cache and checks it against the registry's
sha256, builds the backbone from its ``zoo:NAME`` weights (the same path as training: fetched and
verified, or a local override, see ``harma_zoo.hub.references``), attaches the method, loads the
trained tensors (which checks the backbone fingerprint the adapter was trained on), and hands back
the model in eval mode with the transform and the tokenizer that go with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torchvision.transforms import Compose

from harma_zoo.backbones.base import DualEncoder, TextTokens
from harma_zoo.data.text import clean_caption
from harma_zoo.engine.checkpoint import load_adapter, read_metadata
from harma_zoo.engine.seeding import isolated_random_state
from harma_zoo.hub.entries import fetch_entry
from harma_zoo.hub.index import BackboneEntry, CheckpointEntry, ZooIndex, load_index
from harma_zoo.hub.references import has_weights, zoo_config
from harma_zoo.model import RetrievalModel, build_model
from harma_zoo.resources import project_folder, project_recipe

__all__ = [
    "CaptionTokenizer",
    "Pretrained",
    "build_model",
    "list_backbones",
    "list_checkpoints",
    "list_recipes",
    "load_pretrained",
]


class CaptionTokenizer:
    """Cleans captions as training did (lower case, punctuation out, at most ``max_words`` words: see
    ``harma_zoo.data.text``), then tokenises them for the backbone: ``tokenizer(["many planes ..."])``
    -> token tensors."""

    def __init__(self, backbone: DualEncoder, max_words: int = 30, device: torch.device | str | None = None) -> None:
        self.backbone = backbone
        self.max_words = max_words
        self.device = device

    def __call__(self, texts: str | Sequence[str]) -> TextTokens:
        texts = [texts] if isinstance(texts, str) else list(texts)
        tokens = self.backbone.tokenize([clean_caption(text, self.max_words) for text in texts])
        return {key: value.to(self.device) for key, value in tokens.items()} if self.device else tokens


class Pretrained(NamedTuple):
    """What ``load_pretrained`` returns; unpacks as ``model, transform, tokenizer``."""

    model: RetrievalModel
    transform: Compose
    tokenizer: CaptionTokenizer


def _looks_like_file(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or text.endswith(".safetensors") or "/" in text or Path(text).is_file()


def _recipe_seed(recipe: str) -> int | None:
    """The seed of a project recipe (what seeded a random-weight backbone), None when there is no such recipe.

    ``recipe`` is read from a checkpoint: only a recipe of that name in the project's recipes/ is read.
    """
    from harma_zoo.engine.recipe import load_recipe

    try:
        return int(load_recipe(project_recipe(recipe)).schedule.seed)
    except FileNotFoundError:
        return None


def _registry_adapter(
    index: ZooIndex, name: str, cache_dir: str | Path | None
) -> tuple[Path, dict[str, Any], CheckpointEntry]:
    """The verified adapter file of checkpoint entry ``name`` and its backbone's config, weights as ``zoo:NAME``."""
    entry = index.checkpoint(name)
    adapter = fetch_entry(index, name, cache_dir=cache_dir, progress=False).path
    backbone: BackboneEntry = index.backbone(entry.backbone)
    return adapter, zoo_config(backbone), entry


def load_pretrained(
    name_or_path: str | Path,
    device: torch.device | str | None = None,
    *,
    registry: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Pretrained:
    """A published adapter (by its zoo name) or an adapter file, ready to embed: ``model, transform, tokenizer``.

    Args:
        name_or_path: a checkpoint entry of the registry (``harma-zoo list checkpoints``), or the path
            of an adapter checkpoint (``best.safetensors`` of a run); its backbone is then the one the
            checkpoint records (``zoo:NAME`` weights are fetched and verified as well).
        device: where the model goes (``"cuda"``, ``"cpu"``); default: where it was built, the CPU.
        registry: the registry folder (default: ``$HARMA_ZOO_REGISTRY``, else the project's).
        cache_dir: the download folder (default: ``$HARMA_ZOO_HOME/downloads``).

    Returns the model (eval mode, no gradients needed), the backbone's evaluation transform
    (a PIL image -> a normalised tensor) and a tokenizer that cleans captions as training did.
    Raises ``KeyError`` for an unknown name (listing the known ones), the hub's errors for a file
    that cannot be fetched or does not match its sha256 (``WeightsUnavailable``, one line saying how
    to provide the backbone's weights, when they are in no cache and cannot be downloaded now), and
    ``ValueError`` when the adapter was trained on other backbone weights.
    """
    if _looks_like_file(name_or_path):
        adapter = Path(name_or_path)
        metadata = read_metadata(adapter)
        config = metadata["backbone"]
        recipe = metadata.get("recipe") or ""
        index = load_index(registry) if registry is not None else None
    else:
        index = load_index(registry)
        adapter, config, entry = _registry_adapter(index, str(name_or_path), cache_dir)
        metadata = read_metadata(adapter)
        recipe = entry.recipe
    seed = metadata.get("seed")
    # A backbone with random weights is what its seed made: it is rebuilt from the run's seed.
    if seed is None and not has_weights(config, index):
        seed = _recipe_seed(recipe)
    with isolated_random_state(int(seed)) if seed is not None else nullcontext():
        model = build_model(config, metadata["method"], metadata.get("loss"), index=index, cache_dir=cache_dir)
    load_adapter(model, adapter, metadata["method"])
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return Pretrained(model, model.backbone.eval_transform(), CaptionTokenizer(model.backbone, device=device))


def list_backbones(registry: str | Path | None = None) -> list[BackboneEntry]:
    """The registry's backbone entries (name, family, architecture, weights, licence, citation)."""
    return list(load_index(registry).backbones.values())


def list_checkpoints(registry: str | Path | None = None) -> list[CheckpointEntry]:
    """The published adapter checkpoints: each loads with ``load_pretrained(entry.name)``."""
    return list(load_index(registry).checkpoints.values())


def list_recipes() -> list[str]:
    """Names of the project's recipes (``harma-zoo train NAME``)."""
    return sorted(path.stem for path in project_folder("recipes").glob("*.py"))
