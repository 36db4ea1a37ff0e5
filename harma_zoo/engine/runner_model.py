"""The retrieval model in the shape mmengine's Runner drives."""

from __future__ import annotations

import torch
from mmengine.model import BaseModel

from harma_zoo.model import RetrievalModel
from harma_zoo.recompute import check_chunk_size


class RunnerModel(BaseModel):
    """Tokenises a batch's captions and returns the loss terms for ``train_step``.

    Only the key ``loss`` contains "loss", so mmengine backpropagates the total once;
    the parts and the temperature are logged beside it. A ``chunk_size`` embeds each batch
    that many rows at a time, with the same loss and gradients (``RetrievalModel.forward``).
    """

    def __init__(self, retrieval: RetrievalModel, chunk_size: int | None = None) -> None:
        super().__init__()
        self.retrieval = retrieval
        self.chunk_size = check_chunk_size(chunk_size)

    def init_weights(self) -> None:
        """Keep every weight as built: mmengine would otherwise re-initialise submodules that
        define ``init_weights`` (timm ViTs, transformers models), wiping pretrained weights."""

    def forward(
        self, pixels: torch.Tensor, captions: list[str], image_ids: torch.Tensor, mode: str = "loss"
    ) -> dict[str, torch.Tensor]:
        if mode != "loss":
            raise ValueError(
                f"RunnerModel only computes losses (mode 'loss'), not {mode!r}; evaluation embeds directly"
            )
        tokens = {k: v.to(pixels.device) for k, v in self.retrieval.backbone.tokenize(captions).items()}
        terms = self.retrieval(pixels, tokens, image_ids, chunk_size=self.chunk_size)
        logged = {name.removeprefix("loss_"): value.detach() for name, value in terms.items() if name != "loss"}
        temperature = getattr(self.retrieval.loss, "temperature", None)
        if isinstance(temperature, torch.Tensor):
            logged["temperature"] = temperature.detach()
        return {"loss": terms["loss"], **logged}
