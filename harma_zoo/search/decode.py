"""Decoding items into model inputs, in DataLoader workers: an item that does not decode is reported, not fatal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from rasterio.errors import RasterioError
from torch.utils.data import Dataset

from harma_zoo.data.images import UnreadableImageError, load_image
from harma_zoo.search.errors import SearchError
from harma_zoo.search.geo import read_chip
from harma_zoo.search.items import Item

__all__ = ["ItemImages", "collate_items", "read_item"]

# What reading one item may raise without it being the program's fault.
DECODE_ERRORS = (UnreadableImageError, SearchError, FileNotFoundError, RasterioError, OSError)


def read_item(item: Item) -> Image.Image:
    """The RGB image of an item: the whole file, or its chip of the scene."""
    if item.window is None:
        return load_image(item.path, item.path)
    return read_chip(item.path, item.window)


class ItemImages(Dataset):
    """``(position, pixels or None, error or None)`` for each item, ``position`` its index in ``items``."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return position, self.transform(read_item(self.items[position])), None
        except DECODE_ERRORS as error:
            return position, None, str(error) or type(error).__name__


def collate_items(samples: Sequence[tuple[int, torch.Tensor | None, str | None]]) -> dict[str, Any]:
    """A batch: the positions and stacked pixels of the items that decoded, and the errors of those that did not."""
    good = [(position, pixels) for position, pixels, _ in samples if pixels is not None]
    return {
        "positions": [position for position, _ in good],
        "pixels": torch.stack([pixels for _, pixels in good]) if good else None,
        "errors": [(position, error) for position, pixels, error in samples if pixels is None],
    }
