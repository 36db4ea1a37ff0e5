"""Methods; importing this package registers all of them."""

from harma_zoo.methods import harma  # noqa: F401
from harma_zoo.methods.base import Method

__all__ = ["Method"]
