"""Backbone families; importing this package registers all of them."""

from harma_zoo.backbones import hf_blip, hf_clip, hf_siglip, open_clip  # noqa: F401
from harma_zoo.backbones.base import DualEncoder, TextTokens

__all__ = ["DualEncoder", "TextTokens"]
