"""The frozen backbone: nothing trains, not even the temperature (zero-shot evaluation)."""

from __future__ import annotations

from typing import ClassVar

from harma_zoo.methods.base import Method
from harma_zoo.registry import METHODS


@METHODS.register_module("frozen")
class Frozen(Method):
    """Leaves the backbone as it is; ``attach`` only freezes it."""

    trains_temperature: ClassVar[bool] = False
