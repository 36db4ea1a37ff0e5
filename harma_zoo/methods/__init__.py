"""Methods; importing this package registers all of them."""

from harma_zoo.methods import adapter, frozen, full, harma, lora  # noqa: F401
from harma_zoo.methods.base import Method

__all__ = ["Method"]
