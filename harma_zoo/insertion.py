"""The one hook-insertion API: every method reaches every backbone through it.

A backbone family lists its insertion points (tower, block, branch, width and the
module whose output is that branch). A method attaches a function to a point; the
function receives the branch output as (batch, tokens, width) whatever the
backbone's own layout, and returns its replacement. Attaching registers a forward
hook and adds nothing to the backbone, so detaching leaves it exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

Tower = str  # "image" or "text"
Branch = str  # "mlp" or "attn"
BranchFunction = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InsertionPoint:
    """The output of one residual branch of one transformer block.

    ``seq_first`` says the module emits (tokens, batch, width); attached functions
    always see (batch, tokens, width). When the module returns a tuple (attention
    layers often do), its first element is the branch output.
    """

    tower: Tower
    block: int
    branch: Branch
    width: int
    module: nn.Module = field(compare=False, repr=False)
    seq_first: bool = False

    @property
    def key(self) -> str:
        return f"{self.tower}.{self.block}.{self.branch}"


def _branch_hook(point: InsertionPoint, function: BranchFunction):
    def hook(module: nn.Module, args: tuple, output):
        rest = None
        if isinstance(output, tuple):
            output, rest = output[0], output[1:]
        x = output.transpose(0, 1) if point.seq_first else output
        y = function(x)
        y = y.transpose(0, 1) if point.seq_first else y
        return (y, *rest) if rest is not None else y

    return hook


class Attachment:
    """The hooks one method placed on a backbone; ``detach`` removes all of them."""

    def __init__(self, handles: list[RemovableHandle], points: list[InsertionPoint]) -> None:
        self._handles = handles
        self.points = points

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def attach(functions: Iterable[tuple[InsertionPoint, BranchFunction]]) -> Attachment:
    """Hook each function onto its insertion point; returns the handle to undo it."""
    handles, points = [], []
    for point, function in functions:
        handles.append(point.module.register_forward_hook(_branch_hook(point, function)))
        points.append(point)
    return Attachment(handles, points)


def select_points(
    points: Iterable[InsertionPoint],
    branch: Branch = "mlp",
    towers: Iterable[Tower] = ("image", "text"),
    blocks: Iterable[int] | None = None,
) -> list[InsertionPoint]:
    """Points of one branch kind in the given towers, optionally only some blocks.

    ``blocks`` may hold negative indices, counted from the end of each tower, so
    "the last four blocks" means the same thing for towers of different depths.
    """
    towers = tuple(towers)
    chosen = [p for p in points if p.branch == branch and p.tower in towers]
    if blocks is None:
        return chosen
    wanted = list(blocks)
    selected = []
    for tower in towers:
        in_tower = [p for p in chosen if p.tower == tower]
        depth = len(in_tower)
        for index in wanted:
            if not -depth <= index < depth:
                raise ValueError(f"block {index} does not exist in the {tower} tower ({depth} blocks)")
        resolved = {index % depth for index in wanted}
        selected.extend(p for p in in_tower if p.block in resolved)
    return selected


def block_names(root: nn.Module, points: Iterable[InsertionPoint]) -> dict[tuple[Tower, int], str]:
    """Name in ``root`` of every block of ``points``: the deepest module holding both of its branches.

    In insertion-point order; every block must have an attention and an MLP point.
    """
    names = {id(module): name for name, module in root.named_modules()}
    branches: dict[tuple[Tower, int], dict[Branch, nn.Module]] = {}
    for point in points:
        branches.setdefault((point.tower, point.block), {})[point.branch] = point.module
    blocks = {}
    for (tower, block), branch in branches.items():
        if set(branch) != {"attn", "mlp"}:
            raise ValueError(f"{tower} block {block} lacks an attention or MLP insertion point")
        common = []
        for a, m in zip(names[id(branch["attn"])].split("."), names[id(branch["mlp"])].split("."), strict=False):
            if a != m:
                break
            common.append(a)
        if not common:
            raise ValueError(f"the branches of {tower} block {block} share no parent module")
        blocks[(tower, block)] = ".".join(common)
    return blocks
