"""Full fine-tuning: every parameter of both towers trains (the backbone's embedding parameters)."""

from __future__ import annotations

from harma_zoo.backbones.base import DualEncoder
from harma_zoo.insertion import Attachment
from harma_zoo.methods.base import Method
from harma_zoo.registry import METHODS


@METHODS.register_module("full")
class Full(Method):
    """Unfreezes ``backbone.embedding_parameters()`` once ``attach`` has frozen the backbone."""

    def _attach(self, backbone: DualEncoder) -> Attachment | None:
        for _, parameter in backbone.embedding_parameters():
            parameter.requires_grad_(True)
        return None
