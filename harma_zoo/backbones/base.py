"""The uniform surface every backbone family implements."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import Compose

from harma_zoo.data import transforms
from harma_zoo.insertion import InsertionPoint, block_names
from harma_zoo.recompute import checkpoint_modules

TextTokens = dict[str, torch.Tensor]


class DualEncoder(nn.Module):
    """A dual-encoder vision-language model seen through one small interface.

    Subclasses wrap one kind of model, register themselves in ``BACKBONES`` and
    implement the encoders, the tokenizer and the insertion points. Parameters whose
    names start with ``image_prefixes`` / ``text_prefixes`` form the two towers;
    anything else (a CLIP logit scale, an ITM head) is not used for embedding.

    Everything else the toolkit needs to know about a family is here too, so that a new
    family is one file: the option that takes its weights (``weights_option``, where
    ``zoo:NAME`` resolves and where a file of ``save_weights`` loads back), the kinds of
    registry weights it loads (``weights_kinds``), what its loader does with weights it
    downloads itself (``loader_note``), and the modules LoRA adapts by default
    (``lora_qkv_modules``, ``lora_mlp_modules``).
    """

    image_prefixes: tuple[str, ...] = ()
    text_prefixes: tuple[str, ...] = ()
    main_option: ClassVar[str] = "source"  # the option that ``family:VALUE`` on the command line sets
    weights_option: ClassVar[str] = "source"  # the option that takes the weights: a file, tag or hub id
    # the kinds of registry weights (registry/README.md) it loads: no weights, or one file (`url`, `file`), and
    # `tag` (an OpenCLIP pretrained tag) or `hub` (a Hugging Face model id) where its loader downloads those itself
    weights_kinds: ClassVar[tuple[str, ...]] = ("random", "url", "file")
    # LoRA's default targets, as module names inside one transformer block (the deepest module holding
    # both of the block's insertion points): the attention's query/key/value input projections (nn.Linear,
    # or an attention module applying a fused ``in_proj_weight``) and the MLP's linear layers. A family
    # may list the names of several block layouts; names a block does not have as such a module are passed over.
    lora_qkv_modules: ClassVar[tuple[str, ...]] = ()
    lora_mlp_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.image_size = image_size
        self.mean = tuple(mean)
        self.std = tuple(std)

    @classmethod
    def tiny_options(cls) -> dict:
        """Options that build a tiny instance with random weights, offline: for tests and demos."""
        raise NotImplementedError(f"{cls.__name__} defines no tiny configuration")

    @classmethod
    def loader_note(cls, source: str, options: dict[str, Any]) -> str:
        """What the family's loader does with ``source``, weights it downloads itself (a tag, a hub id)."""
        return f"{cls.__name__} loads {source!r} itself when the backbone is built"

    # --- encoders -------------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Projected, unnormalised image embeddings (batch, dim)."""
        raise NotImplementedError

    def text_features(self, tokens: TextTokens) -> torch.Tensor:
        """Projected, unnormalised text embeddings (batch, dim)."""
        raise NotImplementedError

    def tokenize(self, texts: Sequence[str]) -> TextTokens:
        """Token tensors for already cleaned captions, padded to the family's length."""
        raise NotImplementedError

    def insertion_points(self) -> list[InsertionPoint]:
        """Every block's MLP and attention branch in both towers, in block order."""
        raise NotImplementedError

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.image_features(pixels)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: TextTokens, normalize: bool = True) -> torch.Tensor:
        features = self.text_features(tokens)
        return F.normalize(features, dim=-1) if normalize else features

    def checkpoint_blocks(self, enabled: bool = True) -> None:
        """Recompute each transformer block's activations in the backward pass instead of keeping them.

        Every block (the deepest module holding a block's attention and MLP points) becomes a
        checkpointed region, methods' hooks and layers inside it included: activation memory drops to
        the blocks' inputs plus one block's, for about one more forward pass; gradients are unchanged.
        """
        blocks = block_names(self, self.insertion_points())
        checkpoint_modules((self.get_submodule(name) for name in blocks.values()), enabled)

    # --- transforms -----------------------------------------------------------------
    def train_transform(self) -> Compose:
        return transforms.train_transform(self.image_size, self.mean, self.std)

    def eval_transform(self) -> Compose:
        return transforms.eval_transform(self.image_size, self.mean, self.std)

    # --- parameters -----------------------------------------------------------------
    def tower_of(self, parameter_name: str) -> str:
        """ "image", "text" or "other" for a parameter name relative to this module."""
        if parameter_name.startswith(self.image_prefixes):
            return "image"
        if parameter_name.startswith(self.text_prefixes):
            return "text"
        return "other"

    def embedding_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The parameters of the two towers: what full fine-tuning trains."""
        for name, parameter in self.named_parameters():
            if self.tower_of(name) != "other":
                yield name, parameter

    def save_weights(self, path: str | Path) -> Path:
        """Write the backbone's weights as one file that ``weights_option`` loads back.

        This is how a fully fine-tuned or pretrained-here backbone becomes a zoo backbone:
        ``{**export_options(), weights_option: path}`` builds a backbone with the same fingerprint.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot export its weights")

    def export_options(self) -> dict[str, Any]:
        """The options that, with ``weights_option`` set to a ``save_weights`` file, rebuild this backbone."""
        raise NotImplementedError(f"{type(self).__name__} cannot export its weights")

    def fingerprint(self) -> str:
        """sha256 over the names, shapes and values of the backbone's own weights.

        Adapter checkpoints record it so that they are never loaded onto other weights.
        """
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()
