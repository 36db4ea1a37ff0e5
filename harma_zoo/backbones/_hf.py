"""What the Hugging Face transformers families share: loading, tokenizers, insertion points.

``HFDualEncoder`` builds a transformers model either from a source (a hub id, a
directory written by ``save_pretrained``, or one ``.safetensors`` file written by
``save_weights``) or, offline, from a dict of config overrides with random weights.
A random model has no tokenizer on disk, so it gets a small byte-level one (ids 0-255
are the bytes, the family's special tokens follow) and its text config takes its
vocabulary size and special token ids from it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
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
from harma_zoo.fileio import atomic_write
from harma_zoo.hub.download import WeightsUnavailable, unreachable_reason
from harma_zoo.insertion import InsertionPoint

WEIGHTS_SUFFIX = ".safetensors"  # a source ending so is one file of save_weights, not a hub id or directory


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
            by ``save_pretrained``, loaded with ``from_pretrained``; offline, a hub id
            must already be in the Hugging Face cache. Or a ``.safetensors`` file written
            by ``save_weights``: the weights with the model and image processor configs.
        config: config overrides for a model with random weights, built offline, e.g.
            ``{"text_config": {...}, "vision_config": {...}, "projection_dim": 16}``.
            Unless given, the text config's ``vocab_size`` and special token ids come
            from the tokenizer. Exactly one of ``source`` and ``config`` is given.
        tokenizer: where to load the tokenizer from (hub id or directory) instead of
            ``source``. Without it a ``save_weights`` file uses the tokenizer it was saved
            with, and ``config`` a byte-level tokenizer built here.

    Captions are always padded (and truncated) to ``max_length`` tokens, so that
    adapters attending over every position see the same input whatever the batch.
    """

    weights_kinds = ("random", "hub", "url", "file")
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
        if source is not None and source.endswith(WEIGHTS_SUFFIX):
            model, image_processor, saved_tokenizer = self._load_weights_file(source)
            tokenizer = tokenizer or saved_tokenizer
            text_tokenizer = self._load_tokenizer(tokenizer) if tokenizer else self._byte_tokenizer()
        elif source is not None:
            model, missing = self._load_model(source)
            tokenizer = tokenizer or source
            text_tokenizer = self._load_tokenizer(tokenizer)
            image_processor = self._load_image_processor(source)
        else:
            text_tokenizer = self._load_tokenizer(tokenizer) if tokenizer else None
            model, text_tokenizer = self._random_model(config, text_tokenizer)
        self.tokenizer_source = tokenizer  # None: the byte-level tokenizer built here
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
        if tokenizer is None:
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

    @classmethod
    def loader_note(cls, source: str, options: dict[str, Any]) -> str:
        return (
            f"Hugging Face model id {source!r}: the {cls.family} family loads it with transformers' from_pretrained, "
            "which downloads it into the Hugging Face cache ($HF_HOME) when the backbone is built, and reads it "
            "from there afterwards, offline too"
        )

    # --- building -------------------------------------------------------------------
    def _hub_error(self, what: str, source: str, error: OSError) -> OSError:
        """A local folder that does not load is broken; a hub id that does not is not downloadable now."""
        if Path(source).exists():
            return OSError(f"{self.family}: cannot load {what} from {source!r}: {error}")
        if Path(source).is_absolute() or source.startswith((".", "~")) or source.count("/") > 1:
            return FileNotFoundError(f"{self.family}: {source} does not exist (a hub id is OWNER/NAME)")
        return WeightsUnavailable(
            f"{self.family}: the {what} of Hugging Face model {source!r} is not in the Hugging Face cache ($HF_HOME) "
            f"and cannot be downloaded now: {unreachable_reason(error)}"
        )

    def _load_model(self, source: str) -> tuple[PreTrainedModel, list[str]]:
        try:
            config = AutoConfig.from_pretrained(source)
        except OSError as error:
            raise self._hub_error("model", source, error) from None
        self._check_model_type(config.model_type, repr(source))
        try:
            model, info = self.model_class.from_pretrained(
                source, config=config, dtype=torch.float32, output_loading_info=True
            )
        except OSError as error:
            raise self._hub_error("weights", source, error) from None
        return model, list(info.get("missing_keys", ()))

    def _check_model_type(self, model_type: str, where: str) -> None:
        if model_type not in self.model_types:
            raise ValueError(
                f"{self.family}: {where} holds a {model_type!r} model; this family loads {', '.join(self.model_types)}"
            )

    def _load_weights_file(self, path: str) -> tuple[PreTrainedModel, Any, str | None]:
        """(model, image processor, tokenizer source or None) from a ``save_weights`` file; nothing is unpickled."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"{self.family}: weights file {path} does not exist")
        try:
            with safe_open(path, framework="pt") as file:
                metadata = file.metadata() or {}
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path}: not a safetensors file ({error})") from error
        if metadata.get("family") != self.family or not {"config", "image_processor"} <= set(metadata):
            raise ValueError(
                f"{path}: not a weights file written by {self.family}'s save_weights (its metadata names family "
                f"{metadata.get('family')!r}); load a save_pretrained directory or a hub id as source instead"
            )
        settings = json.loads(metadata["config"])
        self._check_model_type(settings.get("model_type", ""), path)
        model = self.model_class(self.model_class.config_class.from_dict(settings))
        try:
            load_model(model, path, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path}: its tensors do not fit the model its own config describes: {error}") from error
        image_processor = self.image_processor_class.from_dict(json.loads(metadata["image_processor"]))
        return model, image_processor, metadata.get("tokenizer")

    def _load_tokenizer(self, source: str) -> PreTrainedTokenizerBase:
        try:
            return AutoTokenizer.from_pretrained(source)
        except OSError as error:
            raise self._hub_error("tokenizer", source, error) from None
        except ImportError as error:  # e.g. a SentencePiece tokenizer without the sentencepiece package
            raise ImportError(
                f"{self.family}: the tokenizer of {source!r} needs a missing package: {error} "
                "(SentencePiece tokenizers, SigLIP's: pip install 'harma-zoo[siglip]')"
            ) from error

    def _byte_tokenizer(self) -> PreTrainedTokenizerFast:
        """The byte-level tokenizer of a model built here; its model_max_length is set once the model's is known."""
        return byte_tokenizer(dict(self.special_tokens), self.template)

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
        if text_tokenizer is None:
            text_tokenizer = self._byte_tokenizer()
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

    def save_weights(self, path: str | Path) -> Path:
        """One safetensors file, loadable with ``source=path``: the weights, and as metadata the model and
        image processor configs and where the tokenizer came from (none: the byte-level one built here)."""
        path = Path(path)
        if path.suffix != WEIGHTS_SUFFIX:
            raise ValueError(f"{path}: the weights file must end in {WEIGHTS_SUFFIX} (that is how source= tells it)")
        metadata = {
            "family": self.family,
            "config": self.model.config.to_json_string(),  # as config.json holds it: the changes from the defaults
            "image_processor": self._image_processor.to_json_string(),
        }
        if self.tokenizer_source is not None:
            metadata["tokenizer"] = self.tokenizer_source
        atomic_write(
            path, lambda temporary: save_model(self.model, str(temporary), metadata=metadata, force_contiguous=True)
        )
        return path

    def export_options(self) -> dict[str, Any]:
        return {} if self.tokenizer_source is None else {"tokenizer": self.tokenizer_source}

    def extra_repr(self) -> str:
        return f"source={self.source!r}, max_length={self.max_length}"
