"""Backbone families, one module each; ``harma_zoo.registry.BACKBONES`` imports every module here."""

from harma_zoo.backbones.base import DualEncoder, TextTokens

__all__ = ["DualEncoder", "TextTokens"]
