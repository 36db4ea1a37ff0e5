"""Hugging Face transformers CLIP (``CLIPModel``): OpenAI CLIP and its fine-tunes on the hub.

Text is padded to the model's 77 positions with an attention mask; the pooled text
token is the first end-of-text token, as in ``CLIPModel.get_text_features``.
"""

from __future__ import annotations

from typing import Any

from transformers import CLIPImageProcessor, CLIPModel

from harma_zoo.backbones._hf import HFDualEncoder, clip_style_points
from harma_zoo.backbones.base import TextTokens
from harma_zoo.insertion import InsertionPoint
from harma_zoo.registry import BACKBONES


@BACKBONES.register_module("hf_clip")
class HFCLIPBackbone(HFDualEncoder):
    """A transformers ``CLIPModel``; see ``HFDualEncoder`` for ``source``, ``config`` and ``tokenizer``.

    Example sources: ``openai/clip-vit-base-patch32``, ``openai/clip-vit-base-patch16``.
    """

    family = "hf_clip"
    model_class = CLIPModel
    model_types = ("clip",)
    image_processor_class = CLIPImageProcessor
    # eos last, so that it is also the highest id (old CLIP configs pool at the argmax id)
    special_tokens = {"bos_token": "<|startoftext|>", "pad_token": "<|pad|>", "eos_token": "<|endoftext|>"}
    template = "{bos_token} $A {eos_token}"
    token_ids = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id", "pad_token_id": "pad_token_id"}

    lora_qkv_modules = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    lora_mlp_modules = ("mlp.fc1", "mlp.fc2")

    image_prefixes = ("model.vision_model.", "model.visual_projection.")
    text_prefixes = ("model.text_model.", "model.text_projection.")

    @classmethod
    def tiny_options(cls) -> dict:
        vision, text = cls.tiny_towers()
        return {"config": {"vision_config": vision, "text_config": text, "projection_dim": 16}}

    def _image_processor_options(self, size: int) -> dict[str, Any]:
        return {"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size}}

    def image_features(self, pixels):
        return self.model.visual_projection(self.model.vision_model(pixel_values=pixels).pooler_output)

    def text_features(self, tokens: TextTokens):
        output = self.model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask"))
        return self.model.text_projection(output.pooler_output)

    def insertion_points(self) -> list[InsertionPoint]:
        return clip_style_points(self.model)
