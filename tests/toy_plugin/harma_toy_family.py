"""A toy dual encoder, registered with one decorator: the whole of a harma-zoo backbone family in one file.

Patch embedding + two pre-norm blocks for images, character embedding + two blocks for text;
16-pixel images, so training it on a handful of synthetic scenes takes seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harma_zoo.backbones.base import DualEncoder, TextTokens
from harma_zoo.insertion import InsertionPoint
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


@BACKBONES.register_module("toy_dual_encoder")
class ToyDualEncoder(DualEncoder):
    """Patch embedding + two blocks for images, character embedding + two blocks for text."""

    main_option = "width"
    image_prefixes = ("patch.", "image_blocks.", "image_proj.")
    text_prefixes = ("embed.", "text_blocks.", "text_proj.")
    lora_qkv_modules = ("attn",)  # what LoRA adapts by default, as every family names it
    lora_mlp_modules = ("mlp.0", "mlp.2")
    context = 16

    def __init__(self, width: int = 32) -> None:
        super().__init__(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.patch = nn.Conv2d(3, width, kernel_size=4, stride=4)
        self.image_blocks = nn.ModuleList(ToyBlock(width) for _ in range(2))
        self.image_proj = nn.Linear(width, 16)
        self.embed = nn.Embedding(128, width)
        self.text_blocks = nn.ModuleList(ToyBlock(width) for _ in range(2))
        self.text_proj = nn.Linear(width, 16)

    @classmethod
    def tiny_options(cls) -> dict:
        return {"width": 32}

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
