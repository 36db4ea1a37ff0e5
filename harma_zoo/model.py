"""A backbone, a method attached to it, and a loss: the unit that is trained and evaluated."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harma_zoo.backbones.base import DualEncoder, TextTokens
from harma_zoo.hub.index import ZooIndex
from harma_zoo.hub.references import zoo_weights
from harma_zoo.methods.base import Method
from harma_zoo.plaindata import as_json_data
from harma_zoo.recompute import encode_in_chunks
from harma_zoo.registry import BACKBONES, LOSSES, METHODS, get_class


def _split_type(config: Mapping[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    if "type" not in config:
        raise KeyError(f"{what} config {dict(config)!r} has no 'type'")
    options = dict(config)
    return options.pop("type"), options


def build_backbone(
    config: Mapping[str, Any], *, index: ZooIndex | None = None, cache_dir: str | Path | None = None
) -> DualEncoder:
    """Backbone from ``dict(type=FAMILY, **options)``; an unknown family lists the known ones.

    Weights given as ``zoo:NAME`` are the zoo entry NAME's, from the registry ``index`` (default: the
    one ``load_index`` reads) and the download cache ``cache_dir`` (see ``harma_zoo.hub.references``).
    """
    with zoo_weights(config, index=index, cache_dir=cache_dir) as resolved:
        family, options = _split_type(resolved, "backbone")
        return get_class(BACKBONES, family)(**options)


def build_method(config: Mapping[str, Any], backbone: DualEncoder) -> Method:
    """Method (not yet attached) sized for ``backbone`` from ``dict(type=NAME, **options)``."""
    name, options = _split_type(config, "method")
    return get_class(METHODS, name)(backbone, **options)


def resolved_method(config: Mapping[str, Any], used: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``dict(type=NAME, **options)`` with every option the method has filled in, as plain JSON data.

    Why: ``blocks=None`` written out and ``blocks`` left to its default are the same method; a checkpoint,
    a registry entry and a recipe are compared (and published) in this one form. ``used`` holds the options
    a built method reported (a checkpoint's ``extra.method_options``): they fill what a method sizes from
    its backbone (HarMA's unset bottleneck) and what the config leaves None.
    """
    name, options = _split_type(config, "method")
    resolved = dataclasses.asdict(get_class(METHODS, name).make_options(**options))
    resolved.update({key: value for key, value in (used or {}).items() if resolved.get(key) is None})
    return {"type": name, **as_json_data(resolved)}


def build_loss(config: Mapping[str, Any]) -> nn.Module:
    name, options = _split_type(config, "loss")
    return get_class(LOSSES, name)(**options)


class RetrievalModel(nn.Module):
    """Backbone + attached method + loss; owns every parameter a run trains."""

    def __init__(self, backbone: DualEncoder, method: Method, loss: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.method = method
        self.loss = loss
        self.backbone_fingerprint = backbone.fingerprint()  # of the bare weights, before anything is attached
        method.attach(backbone)
        if not method.trains_temperature:
            loss.requires_grad_(False)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode_image(pixels)

    def encode_text(self, tokens: TextTokens) -> torch.Tensor:
        return self.backbone.encode_text(tokens)

    def forward(
        self, pixels: torch.Tensor, tokens: TextTokens, image_ids: torch.Tensor, chunk_size: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss terms of one batch of (image, caption, image id) rows.

        With a ``chunk_size`` below the batch size, the rows are embedded that many at a time
        (``harma_zoo.recompute.encode_in_chunks``): the same loss and gradients of the whole batch,
        with the activation memory of one chunk, for one more forward pass.
        """
        if chunk_size is not None and chunk_size < len(pixels):
            image_emb, text_emb = encode_in_chunks(self.encode_image, self.encode_text, pixels, tokens, chunk_size)
            return self.loss.terms(image_emb, text_emb, image_ids)
        return self.loss.terms(self.encode_image(pixels), self.encode_text(tokens), image_ids)

    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((name, p) for name, p in self.named_parameters() if p.requires_grad)


def build_model(
    backbone: Mapping[str, Any],
    method: Mapping[str, Any],
    loss: Mapping[str, Any] | None = None,
    *,
    index: ZooIndex | None = None,
    cache_dir: str | Path | None = None,
) -> RetrievalModel:
    """The whole retrieval model from three configs (the loss defaults to HarMA's).

    ``index`` and ``cache_dir``: where ``zoo:NAME`` backbone weights are looked up (see ``build_backbone``).
    """
    built_backbone = build_backbone(backbone, index=index, cache_dir=cache_dir)
    built_method = build_method(method, built_backbone)
    return RetrievalModel(built_backbone, built_method, build_loss(loss or {"type": "harma"}))
