"""Feed batch-first ``nn.MultiheadAttention`` inputs stored sequence-first, for faster CPU training.

Why: a ``batch_first=True`` module transposes its (batch, tokens, width) input to (tokens, batch,
width) and projects it with ``F.linear``. When that input needs a gradient (every block after the
first adapter, with HarMA or LoRA; all of them with ``full``), ``matmul`` does not fold the
transposed 3-D input into one matrix product: it runs a batched product over the tokens with the
weight broadcast (``bmm``), which the profiler showed at ~29% of an OpenCLIP ViT-B/32 HarMA step on
CPU. Given a copy laid out (tokens, batch, width) in memory, the module's transpose is contiguous
and the projection is one ``addmm``. Values are identical; the cost is one activation copy per
block. ``make bench`` measures the step with and without it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def _sequence_major_inputs(module: nn.MultiheadAttention, args: tuple) -> tuple | None:
    """Self-attention inputs (query is key is value) that need a gradient, re-stored sequence-first."""
    if len(args) < 3 or not (args[0] is args[1] is args[2]):
        return None
    x = args[0]
    if x.dim() != 3 or not x.requires_grad or not torch.is_grad_enabled():
        return None
    stored = x.transpose(0, 1).contiguous().transpose(0, 1)  # same (batch, tokens, width) view, new strides
    return (stored, stored, stored, *args[3:])


def use_sequence_major_attention_inputs(model: nn.Module) -> list[RemovableHandle]:
    """Hook every batch-first ``nn.MultiheadAttention`` of ``model``; the handles remove the hooks."""
    return [
        module.register_forward_pre_hook(_sequence_major_inputs)
        for module in model.modules()
        if isinstance(module, nn.MultiheadAttention) and module.batch_first
    ]
