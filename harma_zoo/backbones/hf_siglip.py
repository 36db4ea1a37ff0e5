"""Hugging Face transformers SigLIP (``SiglipModel``).

SigLIP was trained on text padded to 64 tokens without an attention mask and pools
the last position, so ``tokenize`` returns only ``input_ids`` and the text tower sees
every position, as in the reference implementation. The image tower pools with its
attention-pooling head. ``logit_scale`` and ``logit_bias`` belong to neither tower.
"""

from __future__ import annotations

from transformers import SiglipImageProcessor, SiglipModel

from harma_zoo.backbones._hf import HFDualEncoder, clip_style_points
from harma_zoo.backbones.base import TextTokens
from harma_zoo.insertion import InsertionPoint
from harma_zoo.registry import BACKBONES


@BACKBONES.register_module("hf_siglip")
class HFSiglipBackbone(HFDualEncoder):
    """A transformers ``SiglipModel``; see ``HFDualEncoder`` for ``source``, ``config`` and ``tokenizer``.

    Example sources: ``google/siglip-base-patch16-224``, ``google/siglip-so400m-patch14-384``.
    """

    family = "hf_siglip"
    model_class = SiglipModel
    model_types = ("siglip",)
    image_processor_class = SiglipImageProcessor
    special_tokens = {"eos_token": "</s>", "pad_token": "<pad>"}
    template = "$A {eos_token}"
    token_ids = {"bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id", "pad_token_id": "pad_token_id"}
    text_inputs = ("input_ids",)

    lora_qkv_modules = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    lora_mlp_modules = ("mlp.fc1", "mlp.fc2")

    image_prefixes = ("model.vision_model.",)
    text_prefixes = ("model.text_model.",)

    @classmethod
    def tiny_options(cls) -> dict:
        vision, text = cls.tiny_towers()
        return {"config": {"vision_config": vision, "text_config": dict(text, projection_size=32)}}

    def image_features(self, pixels):
        output = self.model.vision_model(pixel_values=pixels)
        if output.pooler_output is None:
            raise ValueError(f"{self.family}: the vision model has no pooling head (vision_use_head=False)")
        return output.pooler_output

    def text_features(self, tokens: TextTokens):
        return self.model.text_model(input_ids=tokens["input_ids"]).pooler_output

    def insertion_points(self) -> list[InsertionPoint]:
        return clip_style_points(self.model)
