"""Methods, one module each; ``harma_zoo.registry.METHODS`` imports every module here."""

from harma_zoo.methods.base import Method

__all__ = ["Method"]
