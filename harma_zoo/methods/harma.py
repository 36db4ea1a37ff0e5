"""HarMA: gated MLP-branch adapters in both towers with one shared module per block.

Implements the method as docs/methods.md ("HarMA, as implemented") states it: every selected block's MLP
branch output h becomes ``a * Adapter(h) + (1 - a) * h`` with ``a = sigmoid(g)``;
the adapter projects to width r, attends, passes through the shared module of its
block index (in the towers listed in ``shared_towers``), attends again with the
same weights, mixes with a gate and projects back up through a zero-initialised
layer, so an untrained HarMA model computes exactly what the backbone computes.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from harma_zoo.backbones.base import DualEncoder
from harma_zoo.insertion import Attachment, InsertionPoint, attach, select_points
from harma_zoo.methods.base import Method
from harma_zoo.registry import METHODS


def _gate(initial: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor(float(initial)))


def _zero_linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SelfAttention(nn.Module):
    """Unmasked multi-head self-attention over the token axis, (batch, tokens, width).

    The weights live in an ``nn.MultiheadAttention`` (the reference layout, so checkpoints and
    converted reference weights keep their names), but the forward computes what that module's
    forward computes in a few direct steps: one projection to q, k, v laid out per head,
    softmax attention, the output projection. The module's own path transposes its
    input, packs and re-splits q/k/v with copies, and its backward zero-fills and copies each of
    them back, which made up a large share of an adapter's training step on CPU.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attn
        batch, tokens, width = x.shape
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = attn.dropout if self.training else 0.0
        # softmax(q k^T / sqrt(d)) v written out: scaled_dot_product_attention's CPU kernel splits its work by
        # thread count, so the same batch embedded by two processes could differ in the last bits
        weights = torch.softmax((q * attn.head_dim**-0.5) @ k.transpose(-2, -1), dim=-1)
        out = F.dropout(weights, dropout, self.training) @ v
        return F.linear(out.transpose(1, 2).reshape(batch, tokens, width), attn.out_proj.weight, attn.out_proj.bias)


class SharedModule(nn.Module):
    """The "MMS" module of one block index, width r, shared by the towers that use it."""

    def __init__(self, width: int, shared_width: int, heads: int, gate_init: float) -> None:
        super().__init__()
        self.l1 = nn.Linear(width, shared_width)
        self.attn = SelfAttention(shared_width, heads)
        self.gate = _gate(gate_init)
        self.l2 = _zero_linear(shared_width, width)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u1 = self.l1(u)
        c = torch.sigmoid(self.gate)
        v = c * self.attn(u1) + (1 - c) * u1
        return u + self.l2(v)


class GatedAdapter(nn.Module):
    """The "MGA" adapter of one block plus that block's gate (``a`` above, ``g`` in docs/methods.md)."""

    def __init__(self, width: int, bottleneck: int, heads: int, gate_init: float) -> None:
        super().__init__()
        self.block_gate = _gate(gate_init)
        self.down = nn.Linear(width, bottleneck)
        self.attn = SelfAttention(bottleneck, heads)
        self.gate = _gate(gate_init)
        self.up = _zero_linear(bottleneck, width)

    def forward(self, h: torch.Tensor, shared: SharedModule | None) -> torch.Tensor:
        z0 = F.gelu(self.down(h))
        z1 = self.attn(z0)
        if shared is not None:
            z1 = shared(z1)
        z2 = self.attn(z1)
        b = torch.sigmoid(self.gate)
        a = torch.sigmoid(self.block_gate)
        # a * (h + up(m)) + (1 - a) * h is h + a * up(m): the block gate scales the up projection's small
        # weight and bias rather than two activation-sized tensors (the same value up to float rounding)
        return h + F.linear(b * z0 + (1 - b) * z2, a * self.up.weight, a * self.up.bias)


PAPER_SIZES = (128, 64, 8)  # (r, s, heads) of the paper, for 768-wide towers


def sizes_for_width(width: int, bottleneck: int | None = None, shared_width: int | None = None) -> tuple[int, int, int]:
    """HarMA's (bottleneck r, shared width s, heads) for towers ``width`` wide, where an option is not given.

    The rule: r = width // 4 and s = width // 8, capped at the paper's 128 and 64 (reached at width 512:
    ViT-B's 768-wide towers get exactly the paper's sizes); heads = width // 64, capped at the paper's 8,
    lowered until it divides both r and s; nothing below 1. A 64-wide tower gets r=16, s=8, 1 head
    rather than a bottleneck twice its own width.
    """
    r = bottleneck or max(1, min(PAPER_SIZES[0], width // 4))
    s = shared_width or max(1, min(PAPER_SIZES[1], width // 8))
    heads = max(1, min(PAPER_SIZES[2], width // 64))
    while math.gcd(r, s) % heads:
        heads -= 1
    return r, s, heads


@METHODS.register_module("harma")
class HarMA(Method):
    """HarMA adapters on the MLP branch of the chosen blocks of both towers.

    Sizes left unset (None) follow ``sizes_for_width`` of the narrowest chosen insertion point (the
    shared modules serve both towers at one width); ``options_dict()`` then reports the sizes used.
    """

    @dataclasses.dataclass
    class Options:
        bottleneck: int | None = None  # r; None: scaled to the towers (the paper's 128 on ViT-B)
        shared_width: int | None = None  # s; None: scaled (the paper's 64 on ViT-B)
        heads: int | None = None  # None: scaled (the paper's 8 on ViT-B)
        blocks: tuple[int, ...] | None = None  # None: every block; negative indices count from the end
        gate_init: float = 0.6  # initial value of every gate logit (block, adapter and shared gates)
        shared_towers: tuple[str, ...] = ("text",)  # ("image", "text") as in the paper

        def __post_init__(self) -> None:
            for name in ("bottleneck", "shared_width", "heads"):
                value = getattr(self, name)
                if value is not None and value < 1:
                    raise ValueError(f"{name} must be a positive integer, got {value}")
            self.check_heads()
            self.shared_towers = tuple(self.shared_towers)
            unknown = set(self.shared_towers) - {"image", "text"}
            if unknown:
                raise ValueError(f"shared_towers may hold 'image' and 'text', got {sorted(unknown)}")
            if self.blocks is not None:
                self.blocks = tuple(self.blocks)

        def check_heads(self) -> None:
            """Each attention splits its width over the heads: checked once the sizes are known."""
            if self.heads is None:
                return
            for name in ("bottleneck", "shared_width"):
                value = getattr(self, name)
                if value is not None and value % self.heads:
                    raise ValueError(f"{name} ({value}) must be a multiple of heads ({self.heads})")

    def __init__(self, backbone: DualEncoder, **options) -> None:
        super().__init__(backbone, **options)
        o = self.options
        self.points = select_points(backbone.insertion_points(), "mlp", blocks=o.blocks)
        width = min((point.width for point in self.points), default=0)
        if width:
            scaled = sizes_for_width(width, o.bottleneck, o.shared_width)
            o.bottleneck, o.shared_width = scaled[:2]
            o.heads = o.heads or scaled[2]
            o.check_heads()
            if o.bottleneck > width:
                warnings.warn(
                    f"harma: bottleneck {o.bottleneck} is wider than the {width}-wide tower it adapts; "
                    f"leave it unset for the scaled default ({sizes_for_width(width)[0]})",
                    stacklevel=2,
                )
        self.adapters = nn.ModuleDict({"image": nn.ModuleDict(), "text": nn.ModuleDict()})
        for point in self.points:
            self.adapters[point.tower][str(point.block)] = GatedAdapter(point.width, o.bottleneck, o.heads, o.gate_init)
        shared_blocks = sorted({p.block for p in self.points if p.tower in o.shared_towers})
        self.shared = nn.ModuleDict(
            {str(block): SharedModule(o.bottleneck, o.shared_width, o.heads, o.gate_init) for block in shared_blocks}
        )

    def _branch(self, point: InsertionPoint):
        adapter = self.adapters[point.tower][str(point.block)]
        shared = self.shared[str(point.block)] if point.tower in self.options.shared_towers else None
        return lambda h: adapter(h, shared)

    def _attach(self, backbone: DualEncoder) -> Attachment:
        return attach((point, self._branch(point)) for point in self.points)

    def parameter_group(self, name: str) -> tuple[str, str]:
        parts = name.split(".")
        if parts[0] == "shared":
            return "shared", "shared module"
        kind = "block gate" if parts[-1] == "block_gate" else "adapter"
        return parts[1], kind
