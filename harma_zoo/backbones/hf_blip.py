"""BLIP's image-text contrastive (ITC) dual encoder, from ``BlipForImageTextRetrieval``.

The embeddings are what ``BlipForImageTextRetrieval(..., use_itm_head=False)``
compares: ``vision_proj`` of the vision model's CLS token, and ``text_proj`` of the
first token of the text encoder run without image cross-attention. The whole model
is kept (so checkpoints load and save unchanged), but the image-text matching head
and the cross-attention layers are outside both towers: ``embedding_parameters``
yields exactly the parameters the ITC embeddings depend on.

Captions are padded to 35 tokens, the length BLIP's retrieval code uses.
"""

from __future__ import annotations

from transformers import BlipForImageTextRetrieval, BlipImageProcessor

from harma_zoo.backbones._hf import HFDualEncoder, layer_points
from harma_zoo.backbones.base import TextTokens
from harma_zoo.insertion import InsertionPoint
from harma_zoo.registry import BACKBONES

TEXT_ENCODER = "model.text_encoder."


@BACKBONES.register_module("hf_blip")
class HFBlipBackbone(HFDualEncoder):
    """The ITC path of a transformers ``BlipForImageTextRetrieval``; arguments as in ``HFDualEncoder``.

    Example sources: ``Salesforce/blip-itm-base-coco``, ``Salesforce/blip-itm-large-coco``.
    Insertion points of the (post-LayerNorm, BERT-style) text encoder are the ``dense``
    layers whose outputs are the attention and MLP branches before the residual add.
    """

    family = "hf_blip"
    model_class = BlipForImageTextRetrieval
    model_types = ("blip",)
    image_processor_class = BlipImageProcessor
    special_tokens = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
    template = "{cls_token} $A {sep_token}"
    token_ids = {
        "bos_token_id": "cls_token_id",
        "eos_token_id": "sep_token_id",
        "sep_token_id": "sep_token_id",
        "pad_token_id": "pad_token_id",
    }
    text_length = 35

    # a fused qkv in the (CLIP-style) image layers, BERT-style text layers
    lora_qkv_modules = ("self_attn.qkv", "attention.self.query", "attention.self.key", "attention.self.value")
    lora_mlp_modules = ("mlp.fc1", "mlp.fc2", "intermediate.dense", "output.dense")

    image_prefixes = ("model.vision_model.", "model.vision_proj.")

    def _set_prefixes(self) -> None:
        # per layer, so that cross-attention (unused without an image) stays outside the text tower
        layers = [
            f"{TEXT_ENCODER}encoder.layer.{index}.{part}."
            for index in range(len(self.model.text_encoder.encoder.layer))
            for part in ("attention", "intermediate", "output")
        ]
        self.text_prefixes = (f"{TEXT_ENCODER}embeddings.", *layers, "model.text_proj.")

    @classmethod
    def tiny_options(cls) -> dict:
        vision, text = cls.tiny_towers()
        return {"config": {"vision_config": vision, "text_config": text, "image_text_hidden_size": 16}}

    def image_features(self, pixels):
        hidden = self.model.vision_model(pixel_values=pixels).last_hidden_state
        return self.model.vision_proj(hidden[:, 0, :])

    def text_features(self, tokens: TextTokens):
        hidden = self.model.text_encoder(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).last_hidden_state
        return self.model.text_proj(hidden[:, 0, :])

    def insertion_points(self) -> list[InsertionPoint]:
        config = self.model.config
        image = layer_points("image", self.model.vision_model.encoder.layers, config.vision_config.hidden_size)
        text = layer_points(
            "text",
            self.model.text_encoder.encoder.layer,
            config.text_config.hidden_size,
            attn="attention.output.dense",
            mlp="output.dense",
        )
        return image + text
