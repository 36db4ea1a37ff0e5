"""The one in-memory form of an annotated split that every reader returns."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath

_CLASS_PREFIX = re.compile(r"([A-Za-z]+)_")


def scene_class(name: str) -> str | None:
    """The scene class a file name starts with (``airport_1.jpg`` -> ``airport``).

    RSICD and the synthetic dataset name files this way; a bare number (``00017.jpg``)
    has no class (None).
    """
    match = _CLASS_PREFIX.match(PurePath(name).name)
    return match.group(1).lower() if match else None


@dataclass
class Annotations:
    """Images and captions of one split; every caption is its own row, duplicates kept.

    ``images[i]`` is an absolute image file path or the encoded bytes of the image
    (Parquet); ``names[i]`` is a readable name for it (the path as the annotation file
    writes it, or a Parquet file name / row id). ``caption_image[j]`` is the index in
    ``images`` of the image that caption ``j`` describes.
    """

    images: list[str | bytes]
    names: list[str]
    captions: list[str]
    caption_image: list[int]
    source: str

    def __post_init__(self) -> None:
        self.images = list(self.images)
        self.names = list(self.names)
        self.captions = list(self.captions)
        self.caption_image = [int(index) for index in self.caption_image]
        where = f"annotations from {self.source}"
        if not self.images:
            raise ValueError(f"{where}: no images; expected at least one image with its captions")
        if not self.captions:
            raise ValueError(f"{where}: no captions; expected at least one caption")
        if len(self.names) != len(self.images):
            raise ValueError(f"{where}: {len(self.names)} names for {len(self.images)} images; expected one per image")
        if len(self.caption_image) != len(self.captions):
            raise ValueError(
                f"{where}: {len(self.caption_image)} caption->image indices for {len(self.captions)} captions; "
                "expected one per caption"
            )
        for i, image in enumerate(self.images):
            if not isinstance(image, (str, bytes)):
                raise ValueError(f"{where}: image {i} is a {type(image).__name__}; expected a file path or bytes")
        for j, caption in enumerate(self.captions):
            if not isinstance(caption, str):
                raise ValueError(f"{where}: caption {j} is a {type(caption).__name__}; expected a string")
        count = len(self.images)
        for j, index in enumerate(self.caption_image):
            if not 0 <= index < count:
                raise ValueError(f"{where}: caption {j} points at image {index}; expected an index in [0, {count})")

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    def captions_of(self, image_index: int) -> list[int]:
        """Indices of the captions of image ``image_index``, in caption order."""
        return [j for j, index in enumerate(self.caption_image) if index == image_index]

    def subset(self, image_indices: Iterable[int]) -> Annotations:
        """The given images (in the order given) with all their captions (in caption order)."""
        order = [int(i) for i in image_indices]
        new_index: dict[int, int] = {}
        for i in order:
            if not 0 <= i < self.num_images:
                raise IndexError(f"annotations from {self.source}: no image {i}; there are {self.num_images}")
            if i in new_index:
                raise ValueError(f"annotations from {self.source}: image {i} selected twice")
            new_index[i] = len(new_index)
        kept = [j for j, index in enumerate(self.caption_image) if index in new_index]
        return Annotations(
            images=[self.images[i] for i in order],
            names=[self.names[i] for i in order],
            captions=[self.captions[j] for j in kept],
            caption_image=[new_index[self.caption_image[j]] for j in kept],
            source=self.source,
        )

    def __repr__(self) -> str:
        return f"Annotations({self.num_images} images, {self.num_captions} captions, source={self.source!r})"

    def of_classes(self, classes: Iterable[str]) -> Annotations:
        """Only the images whose file-name class (see ``scene_class``) is one of ``classes``."""
        wanted = {c.lower() for c in classes}
        kept = [i for i, name in enumerate(self.names) if scene_class(name) in wanted]
        if not kept:
            found = sorted({c for c in map(scene_class, self.names) if c})
            raise ValueError(
                f"annotations from {self.source}: no image of class(es) {sorted(wanted)}; classes found: {found}"
            )
        return self.subset(kept)
