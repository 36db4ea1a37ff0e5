"""HarMA's losses: multi-positive contrastive, adaptive ("focal") triplet, and their sum.

Every loss takes L2-normalised image and caption embeddings (B x D) and the image id
of each row (row i is the pair (image_i, caption_i); several rows may share an
image), gathers all three across processes, and computes the loss of the global
batch (the formulas: docs/methods.md, "Losses").

Gradients under data parallelism: the gather keeps gradients, so every rank
computes the full global loss, and the backward pass of the gather sums, over all
ranks, the gradient each rank's loss sends to a rank's local rows. A rank's local
embedding gradient is therefore ``world_size`` times the single-process gradient
of those rows. DDP averages parameter gradients over ranks, which divides that
factor out again: the encoders receive exactly the single-process gradient. The
temperature is not gathered, so its gradient is the single-process one on every
rank and DDP's average leaves it unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn

from harma_zoo.registry import LOSSES

Terms = dict[str, torch.Tensor]


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Rows of every process, concatenated in rank order, with gradients flowing back.

    Every rank must hold the same number of rows (the distributed sampler pads, the
    training loader drops the last incomplete batch). One process: ``tensor`` itself.
    """
    if _world_size() == 1:
        return tensor
    return torch.cat(dist_fn.all_gather(tensor), dim=0)


def gather_ids(image_ids: torch.Tensor) -> torch.Tensor:
    """Image ids of every process, concatenated in rank order (ids need no gradient)."""
    world_size = _world_size()
    if world_size == 1:
        return image_ids
    parts = [torch.empty_like(image_ids) for _ in range(world_size)]
    dist.all_gather(parts, image_ids.contiguous())
    return torch.cat(parts, dim=0)


def same_image(image_ids: torch.Tensor) -> torch.Tensor:
    """(B x B) boolean matrix, True where rows i and j belong to the same image."""
    return image_ids[:, None] == image_ids[None, :]


class _GatheredLoss(nn.Module):
    """Gathers the batch across processes once, then computes the terms of the global batch.

    ``terms`` returns a dict holding the named parts and their total under ``"loss"``,
    so a trainer logs any loss the same way; ``forward`` returns that total.
    """

    def terms(self, image_emb: torch.Tensor, text_emb: torch.Tensor, image_ids: torch.Tensor) -> Terms:
        image_ids = image_ids.to(image_emb.device)
        return self._terms(gather_with_grad(image_emb), gather_with_grad(text_emb), gather_ids(image_ids))

    def forward(self, image_emb: torch.Tensor, text_emb: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        return self.terms(image_emb, text_emb, image_ids)["loss"]

    def _terms(self, image_emb: torch.Tensor, text_emb: torch.Tensor, image_ids: torch.Tensor) -> Terms:
        raise NotImplementedError


@LOSSES.register_module("contrastive")
class ContrastiveLoss(_GatheredLoss):
    """Symmetric InfoNCE in which every caption of an image is a positive for it.

    The temperature τ divides the similarities directly (it is not a log-scale) and
    is not clamped, as in the reference code.
    """

    def __init__(self, temperature: float = 0.07, learnable: bool = True) -> None:
        super().__init__()
        self.temperature = nn.Parameter(torch.tensor(float(temperature)), requires_grad=learnable)

    def _terms(self, image_emb: torch.Tensor, text_emb: torch.Tensor, image_ids: torch.Tensor) -> Terms:
        logits = image_emb @ text_emb.t() / self.temperature
        positives = same_image(image_ids).to(logits.dtype)
        targets = positives / positives.sum(dim=1, keepdim=True)
        # same_image is symmetric, so the caption -> image targets are the same matrix.
        image_to_text = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        text_to_image = -(targets * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
        loss = (image_to_text + text_to_image) / 2
        return {"loss_contrastive": loss, "loss": loss}


@LOSSES.register_module("triplet")
class TripletLoss(_GatheredLoss):
    """Hinge on every (anchor, negative) pair, weighted by (1 - exp(-cost))**gamma and summed.

    The weight is not detached, so hard pairs are emphasised in the gradient too.
    By default only the diagonal is masked, so other captions of the same image
    count as negatives (the reference behaviour); ``mask_same_image`` masks them too.
    """

    def __init__(self, margin: float = 0.2, gamma: float = 2.0, mask_same_image: bool = False) -> None:
        super().__init__()
        self.margin = margin
        self.gamma = gamma
        self.mask_same_image = mask_same_image

    def _terms(self, image_emb: torch.Tensor, text_emb: torch.Tensor, image_ids: torch.Tensor) -> Terms:
        scores = image_emb @ text_emb.t()
        positive = scores.diagonal()
        cost_caption = (self.margin + scores - positive[:, None]).clamp(min=0)  # image i: caption j above caption i
        cost_image = (self.margin + scores - positive[None, :]).clamp(min=0)  # caption j: image i above image j
        if self.mask_same_image:
            mask = same_image(image_ids)
        else:
            mask = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
        cost_caption = cost_caption.masked_fill(mask, 0)
        cost_image = cost_image.masked_fill(mask, 0)
        loss = (self._weighted_sum(cost_caption) + self._weighted_sum(cost_image)) / 2
        return {"loss_triplet": loss, "loss": loss}

    def _weighted_sum(self, cost: torch.Tensor) -> torch.Tensor:
        return ((1 - torch.exp(-cost)) ** self.gamma * cost).sum()


@LOSSES.register_module("harma")
class HarmaLoss(_GatheredLoss):
    """HarMA's training loss, contrastive + triplet; its only parameter is the temperature."""

    def __init__(
        self,
        temperature: float = 0.07,
        learnable: bool = True,
        margin: float = 0.2,
        gamma: float = 2.0,
        mask_same_image: bool = False,
    ) -> None:
        super().__init__()
        self.contrastive = ContrastiveLoss(temperature=temperature, learnable=learnable)
        self.triplet = TripletLoss(margin=margin, gamma=gamma, mask_same_image=mask_same_image)

    @property
    def temperature(self) -> nn.Parameter:
        return self.contrastive.temperature

    def _terms(self, image_emb: torch.Tensor, text_emb: torch.Tensor, image_ids: torch.Tensor) -> Terms:
        contrastive = self.contrastive._terms(image_emb, text_emb, image_ids)["loss"]
        triplet = self.triplet._terms(image_emb, text_emb, image_ids)["loss"]
        return {"loss_contrastive": contrastive, "loss_triplet": triplet, "loss": contrastive + triplet}
