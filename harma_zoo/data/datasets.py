"""Torch datasets over ``Annotations``.

Captions come out cleaned (``harma_zoo.data.text``) but not tokenised: the training
code tokenises a whole batch with the backbone's ``tokenize``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from harma_zoo.data.annotations import Annotations
from harma_zoo.data.images import load_image
from harma_zoo.data.text import clean_caption

Transform = Callable[[Image.Image], torch.Tensor]

__all__ = ["CaptionPairs", "ImagesOnly", "cleaned_captions", "collate_images", "collate_pairs"]


def cleaned_captions(annotations: Annotations, max_words: int = 30) -> list[str]:
    """Every caption of ``annotations`` cleaned, in caption order (for evaluation)."""
    return [clean_caption(caption, max_words) for caption in annotations.captions]


class CaptionPairs(Dataset):
    """One sample per caption: ``{"pixels": Tensor, "caption": str, "image_id": int}``.

    ``image_id`` is the index of the caption's image in ``annotations``: captions of
    one image share it (what same-image masking in the loss needs).
    """

    def __init__(self, annotations: Annotations, transform: Transform, max_words: int = 30) -> None:
        self.annotations = annotations
        self.transform = transform
        self.captions = cleaned_captions(annotations, max_words)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.annotations.caption_image[index]
        image = load_image(self.annotations.images[image_id], self.annotations.names[image_id])
        return {"pixels": self.transform(image), "caption": self.captions[index], "image_id": image_id}


class ImagesOnly(Dataset):
    """One sample per image: ``{"pixels": Tensor, "index": int}`` (for embedding a gallery)."""

    def __init__(self, annotations: Annotations, transform: Transform) -> None:
        self.annotations = annotations
        self.transform = transform

    def __len__(self) -> int:
        return self.annotations.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = load_image(self.annotations.images[index], self.annotations.names[index])
        return {"pixels": self.transform(image), "index": index}


def collate_pairs(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch of ``CaptionPairs`` samples.

    ``{"pixels": (B, C, H, W) float, "captions": list[str], "image_ids": (B,) long}``.
    """
    return {
        "pixels": torch.stack([sample["pixels"] for sample in samples]),
        "captions": [sample["caption"] for sample in samples],
        "image_ids": torch.tensor([sample["image_id"] for sample in samples], dtype=torch.long),
    }


def collate_images(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch of ``ImagesOnly`` samples: ``{"pixels": (B, C, H, W), "indices": (B,) long}``."""
    return {
        "pixels": torch.stack([sample["pixels"] for sample in samples]),
        "indices": torch.tensor([sample["index"] for sample in samples], dtype=torch.long),
    }
