"""The plug-in path: a dual encoder defined in one file, registered with one decorator, gets HarMA and learns."""

from __future__ import annotations

import torch
from harma_toy_family import ToyDualEncoder  # tests/toy_plugin: registering it is importing it

from harma_zoo.model import build_model

COLOURS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0), "grey": (0.0, 0.0, 0.0)}


def _batch(generator: torch.Generator, size: int = 8):
    names = list(COLOURS)
    classes = torch.randint(len(names), (size,), generator=generator)
    pixels = torch.stack([torch.tensor(COLOURS[names[c]]).view(3, 1, 1).expand(3, 16, 16) for c in classes.tolist()])
    pixels = pixels + 0.3 * torch.randn(pixels.shape, generator=generator)
    captions = [f"a {names[c]} field" for c in classes.tolist()]
    return pixels, captions, classes


def test_a_registered_toy_backbone_learns_with_harma() -> None:
    torch.manual_seed(0)
    model = build_model(
        {"type": "toy_dual_encoder", "width": 32},
        {"type": "harma", "bottleneck": 16, "shared_width": 8, "heads": 2, "shared_towers": ("image", "text")},
    )
    assert isinstance(model.backbone, ToyDualEncoder)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainable = [p for _, p in model.trainable_parameters()]
    assert sum(p.numel() for p in trainable) == sum(p.numel() for p in model.method.parameters()) + 1
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        pixels, captions, classes = _batch(generator)
        loss = model(pixels, model.backbone.tokenize(captions), classes)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in backbone_before.items())
