"""The plug-in path: a dual encoder defined here, registered with one decorator, gets HarMA and learns."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harma_zoo.backbones.base import DualEncoder, TextTokens
from harma_zoo.insertion import InsertionPoint
from harma_zoo.model import build_model
from harma_zoo.registry import BACKBONES


class ToyBlock(nn.Module):
    """A pre-norm transformer block, the shape most dual encoders share."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


@BACKBONES.register_module("toy_dual_encoder", force=True)
class ToyDualEncoder(DualEncoder):
    """Patch embedding + two blocks for images, character embedding + two blocks for text."""

    main_option = "width"
    image_prefixes = ("patch.", "image_blocks.", "image_proj.")
    text_prefixes = ("embed.", "text_blocks.", "text_proj.")
    context = 16

    def __init__(self, width: int = 32) -> None:
        super().__init__(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.patch = nn.Conv2d(3, width, kernel_size=4, stride=4)
        self.image_blocks = nn.ModuleList(ToyBlock(width) for _ in range(2))
        self.image_proj = nn.Linear(width, 16)
        self.embed = nn.Embedding(128, width)
        self.text_blocks = nn.ModuleList(ToyBlock(width) for _ in range(2))
        self.text_proj = nn.Linear(width, 16)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        for block in self.image_blocks:
            x = block(x)
        return self.image_proj(x.mean(dim=1))

    def text_features(self, tokens: TextTokens) -> torch.Tensor:
        x = self.embed(tokens["input_ids"])
        for block in self.text_blocks:
            x = block(x)
        return self.text_proj(x.mean(dim=1))

    def tokenize(self, texts: Sequence[str]) -> TextTokens:
        ids = [[ord(c) % 128 for c in text[: self.context]] for text in texts]
        return {"input_ids": torch.tensor([row + [0] * (self.context - len(row)) for row in ids])}

    def insertion_points(self) -> list[InsertionPoint]:
        points = []
        for tower, blocks in (("image", self.image_blocks), ("text", self.text_blocks)):
            for index, block in enumerate(blocks):
                points.append(InsertionPoint(tower, index, "attn", block.mlp[2].out_features, block.attn))
                points.append(InsertionPoint(tower, index, "mlp", block.mlp[2].out_features, block.mlp))
        return points


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
