"""OpenCLIP family: any OpenCLIP architecture, SigLIP ones included.

Weights come from an OpenCLIP pretrained tag (``laion2b_s34b_b79k``), an
``hf-hub:org/repo`` model id, or a local checkpoint file loaded onto the
architecture. GeoRSCLIP and RemoteCLIP release plain OpenCLIP state dicts for the
``-quickgelu`` ViT models, so they load as local files (``.pt`` files are read with
``weights_only=True``: nothing is unpickled but tensors).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import open_clip
from open_clip.timm_model import TimmModel
from open_clip.transformer import Transformer
from safetensors.torch import save_file
from torch import nn

from harma_zoo.backbones.attention_layout import use_sequence_major_attention_inputs
from harma_zoo.backbones.base import DualEncoder, TextTokens
from harma_zoo.fileio import atomic_write
from harma_zoo.hub.download import WeightsUnavailable, unreachable_reason
from harma_zoo.insertion import InsertionPoint
from harma_zoo.registry import BACKBONES

ARCHITECTURES_DIR = Path(__file__).with_name("open_clip_archs")
open_clip.add_model_config(ARCHITECTURES_DIR)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")


def _looks_like_file(source: str) -> bool:
    return source.endswith(CHECKPOINT_SUFFIXES) or "/" in source or Path(source).exists()


@contextmanager
def _random_build_expected() -> Iterator[None]:
    """Drops open_clip's root-logger warning that no pretrained weights were loaded: with ``pretrained``
    unset, random weights are what was asked for (every tiny test and demo model), not news."""

    def keep(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def create_open_clip_model(arch: str, pretrained: str | None, cache_dir: str | None) -> nn.Module:
    """Build ``arch`` and load ``pretrained`` (tag or file), with errors that name the source."""
    if arch not in open_clip.list_models() and not arch.startswith(("hf-hub:", "local-dir:")):
        raise KeyError(f"unknown OpenCLIP architecture {arch!r}; known: {', '.join(open_clip.list_models())}")
    if pretrained and _looks_like_file(pretrained):
        if not Path(pretrained).is_file():
            raise FileNotFoundError(f"checkpoint file {pretrained!r} does not exist")
        try:
            return open_clip.create_model(arch, pretrained=pretrained, weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"{pretrained}: not a plain tensor checkpoint; refusing to unpickle it ({error})"
            ) from error
        except (RuntimeError, AttributeError, KeyError) as error:  # open_clip's key conversion fails in several ways
            raise ValueError(f"{pretrained}: its weights do not fit architecture {arch!r}: {error}") from error
    if pretrained and arch not in open_clip.list_models():
        raise ValueError(f"{arch!r} carries its own weights; drop pretrained={pretrained!r}")
    if pretrained and pretrained not in open_clip.list_pretrained_tags_by_model(arch):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise KeyError(f"unknown pretrained tag {pretrained!r} for {arch!r}; known tags: {tags}")
    if not pretrained:
        with _random_build_expected():
            return open_clip.create_model(arch, pretrained=None, cache_dir=cache_dir, weights_only=True)
    _download_tag(arch, pretrained, cache_dir)
    return open_clip.create_model(arch, pretrained=pretrained, cache_dir=cache_dir, weights_only=True)


def _download_tag(arch: str, tag: str, cache_dir: str | None) -> None:
    """Have OpenCLIP download (or find in its cache) the weights of ``tag``; fail in one line when it cannot.

    ``create_model`` then finds the file in the cache. Called first so that a missing file is a
    ``WeightsUnavailable`` naming the tag rather than OpenCLIP's logged error and RuntimeError.
    """
    try:
        open_clip.download_pretrained(open_clip.get_pretrained_cfg(arch, tag), cache_dir=cache_dir)
    except (OSError, RuntimeError) as error:  # hub and URL downloads fail as either
        raise WeightsUnavailable(
            f"open_clip: the weights of pretrained tag {tag!r} of {arch} are not in OpenCLIP's cache "
            f"({cache_dir or 'the Hugging Face cache, $HF_HOME'}) and cannot be downloaded now: "
            f"{unreachable_reason(error)}"
        ) from None


def _transformer_points(tower: str, transformer: Transformer) -> list[InsertionPoint]:
    points = []
    seq_first = not getattr(transformer, "batch_first", True)
    for index, block in enumerate(transformer.resblocks):
        width = block.mlp.c_proj.out_features
        points.append(InsertionPoint(tower, index, "attn", width, block.attn, seq_first))
        points.append(InsertionPoint(tower, index, "mlp", width, block.mlp, seq_first))
    return points


def _timm_points(tower: str, trunk: nn.Module) -> list[InsertionPoint]:
    points = []
    for index, block in enumerate(trunk.blocks):
        width = block.mlp.fc2.out_features
        points.append(InsertionPoint(tower, index, "attn", width, block.attn))
        points.append(InsertionPoint(tower, index, "mlp", width, block.mlp))
    return points


@BACKBONES.register_module("open_clip")
class OpenCLIPBackbone(DualEncoder):
    """An OpenCLIP ``CLIP`` / ``CustomTextCLIP`` model (ViT image tower, transformer text tower).

    Args:
        arch: OpenCLIP model name (``ViT-B-32``, ``ViT-B-32-quickgelu``, ``ViT-B-16-SigLIP``,
            the package's tiny ``harma-tiny-vit``...) or ``hf-hub:org/repo``.
        pretrained: a pretrained tag of ``arch``, a checkpoint file, or None for random weights.
        cache_dir: where OpenCLIP caches downloaded weights.
    """

    main_option = "arch"
    weights_option = "pretrained"
    weights_kinds = ("random", "tag", "url", "file")
    # OpenCLIP's own blocks (nn.MultiheadAttention with a fused in_proj_weight) and timm's (SigLIP image towers)
    lora_qkv_modules = ("attn", "attn.qkv")
    lora_mlp_modules = ("mlp.c_fc", "mlp.c_proj", "mlp.fc1", "mlp.fc2")
    image_prefixes = ("model.visual.",)
    text_prefixes = (
        "model.text.",
        "model.transformer.",
        "model.token_embedding.",
        "model.positional_embedding",
        "model.ln_final.",
        "model.text_projection",
    )

    def __init__(self, arch: str = "ViT-B-32", pretrained: str | None = None, cache_dir: str | None = None) -> None:
        model = create_open_clip_model(arch, pretrained, cache_dir)
        preprocess = open_clip.get_model_preprocess_cfg(model)
        size = preprocess["size"]
        super().__init__(size if isinstance(size, int) else size[0], preprocess["mean"], preprocess["std"])
        self.arch = arch
        self.model = model
        try:
            self._tokenizer = open_clip.get_tokenizer(arch, cache_dir=cache_dir)
        except OSError as error:  # architectures with a Hugging Face tokenizer (SigLIP) download it
            raise WeightsUnavailable(
                f"open_clip: the tokenizer of {arch} is not in the Hugging Face cache ($HF_HOME) and cannot be "
                f"downloaded now: {unreachable_reason(error)}"
            ) from None
        self.attention_layout_hooks = use_sequence_major_attention_inputs(model)

    @classmethod
    def tiny_options(cls) -> dict:
        return {"arch": "harma-tiny-vit"}

    @classmethod
    def loader_note(cls, source: str, options: dict[str, Any]) -> str:
        where = options.get("cache_dir") or "its cache_dir option, else the Hugging Face cache ($HF_HOME)"
        return (
            f"OpenCLIP pretrained tag {source!r} of {options.get('arch')}: OpenCLIP downloads the weights into "
            f"its cache ({where}) when the backbone is built, and reads them from there afterwards, offline too"
        )

    def save_weights(self, path: str | Path) -> Path:
        """The OpenCLIP state dict as safetensors, loadable with ``pretrained=path``."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: the weights file must end in .safetensors (that is how OpenCLIP reads it)")
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.model.state_dict().items()}
        atomic_write(path, lambda temporary: save_file(state, str(temporary), metadata={"arch": self.arch}))
        return path

    def export_options(self) -> dict[str, Any]:
        return {"arch": self.arch}

    def image_features(self, pixels):
        return self.model.encode_image(pixels)

    def text_features(self, tokens: TextTokens):
        return self.model.encode_text(tokens["input_ids"])

    def tokenize(self, texts: Sequence[str]) -> TextTokens:
        return {"input_ids": self._tokenizer(list(texts))}

    def insertion_points(self) -> list[InsertionPoint]:
        visual = self.model.visual
        if isinstance(visual, TimmModel):
            image = _timm_points("image", visual.trunk)
        elif hasattr(visual, "transformer"):
            image = _transformer_points("image", visual.transformer)
        else:
            raise TypeError(f"{self.arch}: image tower {type(visual).__name__} has no transformer blocks")
        text_tower = getattr(self.model, "text", self.model)
        if not isinstance(getattr(text_tower, "transformer", None), Transformer):
            raise TypeError(f"{self.arch}: text tower {type(text_tower).__name__} has no OpenCLIP transformer")
        return image + _transformer_points("text", text_tower.transformer)
