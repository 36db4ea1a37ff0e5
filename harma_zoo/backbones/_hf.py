"""What the Hugging Face transformers families share: loading, tokenizers, insertion points.

``HFDualEncoder`` builds a transformers model either from a source (a hub id, or a
directory written by ``save_pretrained``) or, offline, from a dict of config
overrides with random weights. A random model has no tokenizer on disk, so it gets
a small byte-level one (ids 0-255 are the bytes, the family's special tokens follow)
and its text config takes its vocabulary size and special token ids from it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from harma_zoo.backbones.base import DualEncoder, TextTokens
from harma_zoo.insertion import InsertionPoint


def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte-level alphabet: one printable character per byte value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def byte_tokenizer(
    special_tokens: dict[str, str], template: str, max_length: int | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer without merges, built offline.

    Args:
        special_tokens: role (``bos_token``, ``cls_token``...) -> token, in id order
            after the 256 byte tokens.
        template: how one text is framed, e.g. ``"{bos_token} $A {eos_token}"``.
        max_length: the tokenizer's ``model_max_length`` (transformers' default if None).
    """
    alphabet = _bytes_to_unicode()
    vocab = {alphabet[byte]: byte for byte in range(256)}
    for offset, token in enumerate(special_tokens.values()):
        vocab[token] = 256 + offset
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    single = template.format(**special_tokens)
    framing = [(token, vocab[token]) for token in special_tokens.values() if token in single.split()]
    backend.post_processor = processors.TemplateProcessing(single=single, special_tokens=framing)
    options = {} if max_length is None else {"model_max_length": max_length}
    return PreTrainedTokenizerFast(tokenizer_object=backend, **options, **special_tokens)


def layer_points(
    tower: str, layers: Sequence[nn.Module], width: int, attn: str = "self_attn", mlp: str = "mlp"
) -> list[InsertionPoint]:
    """Attention and MLP branch points of batch-first encoder layers.

    ``attn`` and ``mlp`` name, inside each layer, the module whose output is that
    branch before the residual add (``self_attn`` / ``mlp`` in pre-LayerNorm
    CLIP-style layers; ``attention.output.dense`` / ``output.dense`` in BERT ones).
    """
    points = []
    for index, layer in enumerate(layers):
        points.append(InsertionPoint(tower, index, "attn", width, layer.get_submodule(attn)))
        points.append(InsertionPoint(tower, index, "mlp", width, layer.get_submodule(mlp)))
    return points


def clip_style_points(model: nn.Module) -> list[InsertionPoint]:
    """Points of a model with ``vision_model`` and ``text_model`` CLIP-style encoders (CLIP, SigLIP)."""
    config = model.config
    image = layer_points("image", model.vision_model.encoder.layers, config.vision_config.hidden_size)
    text = layer_points("text", model.text_model.encoder.layers, config.text_config.hidden_size)
    return image + text


def _square_size(size: int | Sequence[int]) -> int:
    if isinstance(size, int):
        return size
    height, width = size
    if height != width:
        raise ValueError(f"non-square image size {tuple(size)} is not supported")
    return height


class HFDualEncoder(DualEncoder):
    """Base of the transformers families; a subclass names its model and tokenizer framing.

    Args:
        source: a hub id (``openai/clip-vit-base-patch32``) or a local directory written
            by ``save_pretrained``, loaded with ``from_pretrained``. Offline, a hub id
            must already be in the local cache.
        config: config overrides for a model with random weights, built offline, e.g.
            ``{"text_config": {...}, "vision_config": {...}, "projection_dim": 16}``.
            Unless given, the text config's ``vocab_size`` and special token ids come
            from the tokenizer. Exactly one of ``source`` and ``config`` is given.
        tokenizer: where to load the tokenizer from (hub id or directory) instead of
            ``source``; with ``config`` and no ``tokenizer``, a byte-level tokenizer is built.

    Captions are always padded (and truncated) to ``max_length`` tokens, so that
    adapters attending over every position see the same input whatever the batch.
    """

    family: ClassVar[str]
    model_class: ClassVar[type[PreTrainedModel]]
    model_types: ClassVar[tuple[str, ...]]
    image_processor_class: ClassVar[type]
    special_tokens: ClassVar[dict[str, str]]  # role -> token, for the byte-level tokenizer
    template: ClassVar[str]  # framing of one text, e.g. "{bos_token} $A {eos_token}"
    token_ids: ClassVar[dict[str, str]]  # text config field -> tokenizer attribute giving its id
    text_inputs: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")
    text_length: ClassVar[int | None] = None  # None: the text config's max_position_embeddings

    @staticmethod
    def tiny_towers() -> tuple[dict[str, Any], dict[str, Any]]:
        """(vision_config, text_config) of the tiny random configurations: 2 layers, width 32."""
        tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        return dict(tower, image_size=32, patch_size=8), dict(tower)

    def __init__(
        self, source: str | None = None, config: dict[str, Any] | None = None, tokenizer: str | None = None
    ) -> None:
        if (source is None) == (config is None):
            raise ValueError(f"{self.family}: give exactly one of source (weights) or config (random weights)")
        missing: list[str] = []
        image_processor = None
        built_tokenizer = source is None and tokenizer is None
        if source is not None:
            model, missing = self._load_model(source)
            text_tokenizer = self._load_tokenizer(tokenizer or source)
            image_processor = self._load_image_processor(source)
        else:
            text_tokenizer = self._load_tokenizer(tokenizer) if tokenizer else None
            model, text_tokenizer = self._random_model(config, text_tokenizer)
        vision_config, text_config = model.config.vision_config, model.config.text_config
        self._check_vocabulary(text_tokenizer, text_config.vocab_size)
        image_size = _square_size(vision_config.image_size)
        if image_processor is None:
            image_processor = self.image_processor_class(**self._image_processor_options(image_size))
        super().__init__(image_size, image_processor.image_mean, image_processor.image_std)
        self.source = source
        self.model = model
        positions = text_config.max_position_embeddings
        self.max_length = min(self.text_length or positions, positions)
        if built_tokenizer:
            text_tokenizer.model_max_length = self.max_length
        self._tokenizer = text_tokenizer
        self._image_processor = image_processor
        self._set_prefixes()
        untrained = [name for name in missing if self.tower_of(f"model.{name}") != "other"]
        if untrained:
            raise ValueError(
                f"{self.family}: {source!r} lacks weights the embeddings need (is it the right model?): "
                + ", ".join(sorted(untrained)[:10])
            )
        self.eval()

    # --- building -------------------------------------------------------------------
    def _load_model(self, source: str) -> tuple[PreTrainedModel, list[str]]:
        try:
            config = AutoConfig.from_pretrained(source)
        except OSError as error:
            raise OSError(
                f"{self.family}: cannot load {source!r}; give a hub id (offline: one already in the cache) "
                f"or a directory written by save_pretrained ({error})"
            ) from error
        if config.model_type not in self.model_types:
            raise ValueError(
                f"{self.family}: {source!r} holds a {config.model_type!r} model; "
                f"this family loads {', '.join(self.model_types)}"
            )
        model, info = self.model_class.from_pretrained(
            source, config=config, dtype=torch.float32, output_loading_info=True
        )
        return model, list(info.get("missing_keys", ()))

    def _load_tokenizer(self, source: str) -> PreTrainedTokenizerBase:
        try:
            return AutoTokenizer.from_pretrained(source)
        except OSError as error:
            raise OSError(f"{self.family}: cannot load a tokenizer from {source!r} ({error})") from error
        except ImportError as error:  # e.g. a SentencePiece tokenizer without the sentencepiece package
            raise ImportError(
                f"{self.family}: the tokenizer of {source!r} needs a missing package: {error} "
                "(SentencePiece tokenizers, SigLIP's: pip install 'harma-zoo[siglip]')"
            ) from error

    def _load_image_processor(self, source: str):
        """The source's image processor, or None where it has none (size and normalisation then default)."""
        try:
            return AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError):
            return None

    def _random_model(
        self, overrides: dict[str, Any], text_tokenizer: PreTrainedTokenizerBase | None
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        overrides = copy.deepcopy(overrides)
        config_class = self.model_class.config_class
        text = dict(overrides.pop("text_config", None) or {})
        if text_tokenizer is None:  # its model_max_length is set once the model's is known
            text_tokenizer = byte_tokenizer(dict(self.special_tokens), self.template)
        text.setdefault("vocab_size", len(text_tokenizer))
        self._check_vocabulary(text_tokenizer, text["vocab_size"])
        for field, attribute in self.token_ids.items():
            text.setdefault(field, getattr(text_tokenizer, attribute))
        model = self.model_class(config_class(text_config=text, **overrides))
        return model, text_tokenizer

    def _check_vocabulary(self, text_tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
        if len(text_tokenizer) > vocab_size:
            raise ValueError(
                f"{self.family}: the tokenizer has {len(text_tokenizer)} tokens, "
                f"more than the model's vocabulary of {vocab_size}"
            )

    def _image_processor_options(self, size: int) -> dict[str, Any]:
        """Options of the family's image processor for a model without one (defaults otherwise)."""
        return {"size": {"height": size, "width": size}}

    def _set_prefixes(self) -> None:
        """Set instance ``image_prefixes`` / ``text_prefixes`` where they depend on the model."""

    # --- the DualEncoder surface ----------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> TextTokens:
        if not texts:
            return {key: torch.zeros(0, self.max_length, dtype=torch.long) for key in self.text_inputs}
        encoded = self._tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {key: encoded[key] for key in self.text_inputs}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write model, tokenizer and image processor; ``source=directory`` loads them back."""
        self.model.save_pretrained(directory)
        self._tokenizer.save_pretrained(directory)
        self._image_processor.save_pretrained(directory)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, max_length={self.max_length}"
