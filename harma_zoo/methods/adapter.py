"""A plain bottleneck adapter on the MLP branch of every chosen block (Houlsby / AdaptFormer style).

Each selected block's MLP branch output h becomes ``h + scale * up(gelu(down(h)))``,
attached through the hook API; ``up`` starts at zero, so an untrained adapter is the
identity and the model computes exactly what the backbone computes. It is HarMA
without the attention, the shared modules and the gates: the baseline that isolates
what those add.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from harma_zoo.backbones.base import DualEncoder
from harma_zoo.insertion import Attachment, attach, select_points
from harma_zoo.methods.base import Method
from harma_zoo.registry import METHODS


class Bottleneck(nn.Module):
    """h -> h + scale * up(gelu(down(h))), with ``up`` zero-initialised."""

    def __init__(self, width: int, bottleneck: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.scale * self.up(F.gelu(self.down(h)))


@METHODS.register_module("adapter")
class Adapter(Method):
    """Bottleneck adapters on the MLP branch output of the chosen blocks of the chosen towers."""

    @dataclasses.dataclass
    class Options:
        bottleneck: int = 64
        blocks: tuple[int, ...] | None = None  # None: every block; negative indices count from the end
        scale: float = 1.0
        towers: tuple[str, ...] = ("image", "text")

        def __post_init__(self) -> None:
            if self.bottleneck < 1:
                raise ValueError(f"bottleneck must be a positive integer, got {self.bottleneck}")
            self.towers = tuple(self.towers)
            if not self.towers or set(self.towers) - {"image", "text"}:
                raise ValueError(f"towers may hold 'image' and 'text', got {list(self.towers)}")
            if self.blocks is not None:
                self.blocks = tuple(self.blocks)

    def __init__(self, backbone: DualEncoder, **options) -> None:
        super().__init__(backbone, **options)
        o = self.options
        self.points = select_points(backbone.insertion_points(), "mlp", towers=o.towers, blocks=o.blocks)
        self.adapters = nn.ModuleDict({tower: nn.ModuleDict() for tower in o.towers})
        for point in self.points:
            self.adapters[point.tower][str(point.block)] = Bottleneck(point.width, o.bottleneck, o.scale)

    def _attach(self, backbone: DualEncoder) -> Attachment:
        return attach((point, self.adapters[point.tower][str(point.block)]) for point in self.points)

    def parameter_group(self, name: str) -> tuple[str, str]:
        return name.split(".")[1], "adapter"
