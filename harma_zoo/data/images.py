"""Loading images, and checking up front that every image of a split exists and decodes."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from harma_zoo.data.annotations import Annotations

__all__ = ["UnreadableImageError", "check_images", "load_image"]

# Errors PIL raises on files it cannot identify or decode (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_SHOWN = 5  # how many names an error message lists before "and N more"
# Images with more pixels are refused before they are decoded: 6000 x 6000 decodes to ~100 MB of RGB, while a
# 12000 x 12000 PNG of a few kB would cost 430 MB per copy. Aerial retrieval datasets hold images of < 1 Mpx.
DEFAULT_MAX_IMAGE_PIXELS = 36_000_000


class UnreadableImageError(ValueError):
    """An image file (or embedded image) that exists but does not decode."""


def _describe(ref: str | bytes, name: str) -> str:
    if isinstance(ref, bytes):
        return f"image {name} (embedded, {len(ref)} bytes)"
    return f"image file {ref}"


def _open(ref: str | bytes) -> Image.Image:
    return Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref)


def load_image(ref: str | bytes, name: str) -> Image.Image:
    """The image at path ``ref`` (or encoded in bytes ``ref``) decoded to RGB.

    A missing file raises FileNotFoundError naming the path; a file that does not
    decode raises UnreadableImageError naming it.
    """
    if isinstance(ref, str) and not os.path.isfile(ref):
        raise FileNotFoundError(f"image file {ref} does not exist")
    try:
        with _open(ref) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {ref} does not exist") from None
    except _DECODE_ERRORS as error:
        raise UnreadableImageError(f"cannot decode {_describe(ref, name)}: {error}") from None


def _decode_error(ref: str | bytes, max_pixels: int) -> str | None:
    """None when ``ref`` decodes, else why not. JPEGs are decoded at 1/8 scale: every
    byte of the entropy-coded data is still read, so truncation is caught, ~3x faster.
    The size is read from the header first: an image above ``max_pixels`` is never decoded."""
    try:
        with _open(ref) as image:
            if image.width * image.height > max_pixels:
                return (
                    f"{image.width} x {image.height} = {image.width * image.height:,} pixels, above the limit of "
                    f"{max_pixels:,} (data.max_image_pixels)"
                )
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except FileNotFoundError:
        return "file does not exist"
    except _DECODE_ERRORS as error:
        return str(error) or type(error).__name__
    return None


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown} and {len(items) - _SHOWN} more"


def outside(annotations: Annotations, root: str | Path) -> list[str]:
    """Image paths of ``annotations`` that do not lie under ``root``, compared as written (``..`` resolved,
    links not followed: a link the user placed inside the root is the user's choice, a path in a
    downloaded annotation file is not)."""
    top = os.path.abspath(root)
    return [
        ref
        for ref in annotations.images
        if isinstance(ref, str) and os.path.commonpath([top, os.path.abspath(ref)]) != top
    ]


def check_images(
    annotations: Annotations,
    skip_unreadable: bool = False,
    workers: int | None = None,
    *,
    root: str | Path | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[Annotations, list[str]]:
    """Verify that every image of ``annotations`` is where it may be, exists, and decodes.

    With ``root``, an image path outside it is an error (ValueError naming the paths):
    an annotation file must not reach elsewhere on the disk. A missing image file is
    always an error (FileNotFoundError naming the files and the annotation source). An
    image that does not decode, or has more than ``max_pixels`` pixels, is an error
    (UnreadableImageError naming it) unless ``skip_unreadable``: then it is dropped
    with its captions. Returns the (possibly reduced) annotations and the names of
    the images skipped; the caller reports how many.
    """
    if root is not None and (escaped := outside(annotations, root)):
        raise ValueError(
            f"{len(escaped)} image path(s) listed in {annotations.source} lie outside the image root {root}: "
            f"{_listing(escaped)}; set data.images_outside_root=True if the recipe means it"
        )
    missing = [ref for ref in annotations.images if isinstance(ref, str) and not os.path.isfile(ref)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {annotations.num_images} image files listed in {annotations.source} "
            f"do not exist: {_listing(missing)}"
        )
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = list(pool.map(lambda ref: _decode_error(ref, max_pixels), annotations.images))
    vanished = [ref for ref, error in zip(annotations.images, errors, strict=True) if error == "file does not exist"]
    if vanished:
        raise FileNotFoundError(
            f"image files listed in {annotations.source} disappeared while being checked: {_listing(vanished)}"
        )
    bad = [i for i, error in enumerate(errors) if error is not None]
    if not bad:
        return annotations, []
    described = [f"{_describe(annotations.images[i], annotations.names[i])}: {errors[i]}" for i in bad]
    if not skip_unreadable:
        raise UnreadableImageError(
            f"{len(bad)} of {annotations.num_images} images listed in {annotations.source} do not decode: "
            f"{_listing(described)}; pass skip_unreadable to drop them with their captions"
        )
    if len(bad) == annotations.num_images:
        raise UnreadableImageError(
            f"none of the {annotations.num_images} images listed in {annotations.source} decodes: {_listing(described)}"
        )
    dropped = set(bad)
    kept = annotations.subset(i for i in range(annotations.num_images) if i not in dropped)
    return kept, [annotations.names[i] for i in bad]
