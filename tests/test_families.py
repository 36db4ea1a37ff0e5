"""Every registered backbone family, tried with every method: a new family is covered once registered."""

from __future__ import annotations

import pytest
import torch

from harma_zoo.model import build_backbone, build_method
from harma_zoo.registry import BACKBONES, get_class, registered_names

FAMILIES = registered_names(BACKBONES)
CAPTIONS = ["an airport with two runways", "a river crossing farmland", "a stadium next to a parking lot"]
SMALL_HARMA = {"type": "harma", "bottleneck": 8, "shared_width": 8, "heads": 2}


def tiny(family: str):
    return build_backbone({"type": family, **get_class(BACKBONES, family).tiny_options()})


def embed(backbone) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    pixels = torch.randn(3, 3, backbone.image_size, backbone.image_size, generator=generator)
    return backbone.encode_image(pixels), backbone.encode_text(backbone.tokenize(CAPTIONS))


def test_the_built_in_families_are_registered() -> None:
    assert {"open_clip", "hf_clip", "hf_siglip", "hf_blip"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shared_towers", [("text",), ("image", "text")])
def test_untrained_harma_leaves_the_embeddings_unchanged(family: str, shared_towers) -> None:
    backbone = tiny(family)
    with torch.no_grad():
        bare = embed(backbone)
        method = build_method({**SMALL_HARMA, "shared_towers": shared_towers}, backbone)
        method.attach(backbone)
        adapted = embed(backbone)
    for before, after in zip(bare, adapted, strict=True):
        assert (before - after).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "method", [SMALL_HARMA, {"type": "lora", "rank": 2}, {"type": "adapter", "bottleneck": 4}, {"type": "full"}]
)
def test_gradients_reach_exactly_what_the_method_trains(family: str, method: dict) -> None:
    backbone = tiny(family)
    original = {name: p for name, p in backbone.named_parameters()}
    embedding = {name for name, _ in backbone.embedding_parameters()}
    attached = build_method(method, backbone)
    attached.attach(backbone)
    with torch.no_grad():  # make zero-initialised output layers non-zero so every trained tensor gets a gradient
        for parameter in [*attached.parameters(), *(p for p in backbone.parameters() if p.requires_grad)]:
            parameter.add_(0.05 * torch.randn_like(parameter))
    image, text = embed(backbone)
    (image @ text.T).sum().backward()
    received = {name for name, p in original.items() if p.grad is not None and p.grad.abs().sum() > 0}
    if method["type"] == "full":
        assert received == embedding
    else:
        assert received == set()
        trained = [p for p in [*attached.parameters(), *backbone.parameters()] if p.requires_grad]
        assert trained and all(p.grad is not None for p in trained)
