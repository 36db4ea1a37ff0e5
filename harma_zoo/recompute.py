"""Recomputing activations instead of storing them: exact chunked batches and checkpointed blocks.

Both go through ``torch.utils.checkpoint`` (non-reentrant): a region's forward keeps no activations,
and the backward runs it again with a graph. The gradients are those of the plain computation, so
neither changes what is trained, only how much memory a step holds and how long it takes.

Chunked batches (GradCache, Gao et al. 2021). The contrastive and triplet losses depend on the whole
batch's similarity matrix, so splitting a batch into micro-batches with separate losses (gradient
accumulation) trains with fewer negatives. ``encode_in_chunks`` embeds the batch ``chunk_size`` rows at
a time, each chunk of each tower in its own checkpointed region; the loss is then computed on the whole
batch's embeddings as usual, and its backward re-runs one region at a time (autograd takes the most
recent region first and finishes it before the next), back-propagating that chunk's rows of the
embedding gradient. Activation memory is one chunk's; the price is a second forward of the encoders.
Because it is all one autograd graph with one backward, everything around it is unchanged: the loss
gathers embeddings across processes with gradients as before (its backward hands every rank its rows'
gradient), AMP scales the same loss, and under DDP each parameter's gradient is accumulated and
all-reduced once per step (autograd sums a parameter's gradient over the chunks before its hook fires).

Randomness: each region saves the CPU random state and that of its tensors' device at its start and
restores it for the re-run (``preserve_rng_state``), so dropout (LoRA's included) draws the same masks
in both passes; the global random state after the step is what the first pass left. Tensors reach a
region as positional arguments (keyword arguments packed into one), because checkpoint finds the device
whose random state it saves among its positional arguments only. Augmentation is not a concern here: it
is drawn per sample in the data loader (``harma_zoo.engine.seeding``).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

TextTokens = dict[str, torch.Tensor]


def _call(function: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    return function(*args, **kwargs)


def checkpointed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` as a non-reentrant checkpointed region that replays its randomness."""
    return checkpoint(_call, function, args, kwargs, use_reentrant=False, preserve_rng_state=True)


def check_chunk_size(value: Any, key: str = "chunk_size") -> int | None:
    """``value`` if it is None (no chunking) or a positive integer; otherwise an error naming ``key``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{key} must be a positive integer (rows per chunk) or None, got {value!r}")
    return value


def encode_in_chunks(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    encode_text: Callable[[TextTokens], torch.Tensor],
    pixels: torch.Tensor,
    tokens: TextTokens,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and caption embeddings of the whole batch, computed ``chunk_size`` rows at a time.

    The result is the same tensors (up to float rounding of smaller matrix products) with the same
    gradients as ``encode_image(pixels), encode_text(tokens)``, holding one chunk's activations.
    """
    if check_chunk_size(chunk_size) is None:
        raise ValueError("chunk_size must be a positive integer, got None")
    images, texts = [], []
    for start in range(0, len(pixels), chunk_size):
        rows = slice(start, start + chunk_size)
        images.append(checkpointed(encode_image, pixels[rows]))
        texts.append(checkpointed(encode_text, {key: value[rows] for key, value in tokens.items()}))
    return torch.cat(images), torch.cat(texts)


def _checkpointed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """The module's own forward, checkpointed while gradients are recorded (plain otherwise)."""
    forward = type(self).forward
    if not torch.is_grad_enabled():
        return forward(self, *args, **kwargs)
    return checkpointed(forward, self, *args, **kwargs)


def checkpoint_modules(modules: Iterable[nn.Module], enabled: bool = True) -> None:
    """Make each module's forward a checkpointed region (or plain again), in place.

    The forward is replaced on the instance (a bound method, so copies of the module stay
    correct); parameters, their names and the ``state_dict`` are untouched.
    """
    for module in modules:
        if enabled:
            module.forward = types.MethodType(_checkpointed_forward, module)
        else:
            module.__dict__.pop("forward", None)


def is_checkpointed(module: nn.Module) -> bool:
    forward = module.__dict__.get("forward")
    return isinstance(forward, types.MethodType) and forward.__func__ is _checkpointed_forward
