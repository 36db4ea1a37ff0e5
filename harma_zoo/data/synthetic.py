"""A small built-in image-text dataset that the package draws itself (no downloads).

Each image is an "aerial-like" scene made of composable attributes: a land cover
(water, forest, desert, farmland) with its own colour and texture, a road or none,
and a group of 1-4 objects (buildings, planes or storage tanks) of one colour in one
band of the image (top, middle, bottom). Five captions per image describe it from
templates with synonyms; the first names every attribute, the others a random part
of them, so captions of different images overlap partially and retrieval is not
trivial, while a tiny CLIP model can still learn it in a few CPU minutes.

Positions are only top/middle/bottom: the training transform flips images
horizontally, which would contradict "left"/"right".

The files are written in the HarMA JSON layout (read them with the ``harma_json``
reader): ``train.json`` one entry per caption with ``image_id``, ``val.json`` one entry
per image with its five captions, images under ``images/``, and ``manifest.json``
last, which marks the dataset complete. Generation is deterministic: the same
parameters give the same files byte for byte.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["Scene", "describe_scene", "draw_scene", "scenes_for", "write_synthetic_dataset"]

GENERATOR = "harma_zoo.data.synthetic"
VERSION = 2
CAPTIONS_PER_IMAGE = 5

COVERS = ("water", "forest", "desert", "farmland")
KINDS = ("building", "plane", "tank")
COLOURS = {"red": (214, 39, 40), "white": (245, 245, 245), "black": (20, 20, 20)}
COUNTS = (1, 2, 3, 4)
POSITIONS = ("top", "middle", "bottom")
ROADS = ("none", "horizontal", "vertical")

_COVER_WORDS = {
    "water": ("the water", "a lake", "the sea", "a blue lake"),
    "forest": ("a forest", "dense woods", "green trees", "a dark forest"),
    "desert": ("a desert", "sand", "bare sandy land", "yellow dunes"),
    "farmland": ("farmland", "crop fields", "cultivated fields", "striped fields"),
}
_KIND_WORDS = {  # (singular, plural)
    "building": (("building", "buildings"), ("house", "houses"), ("square roof", "square roofs")),
    "plane": (("plane", "planes"), ("airplane", "airplanes"), ("aircraft", "aircraft")),
    "tank": (("storage tank", "storage tanks"), ("round tank", "round tanks"), ("circle", "circles")),
}
_COLOUR_WORDS = {"red": ("red",), "white": ("white", "bright white"), "black": ("black", "dark")}
_COUNT_WORDS = {1: ("one", "a single"), 2: ("two", "a pair of"), 3: ("three",), 4: ("four",)}
_POSITION_WORDS = {
    "top": ("at the top", "in the upper part", "in the north"),
    "middle": ("in the middle", "in the centre", "across the centre"),
    "bottom": ("at the bottom", "in the lower part", "in the south"),
}
_ROAD_WORDS = {  # noun phrases
    "horizontal": ("a road from east to west", "a horizontal road", "an east west road", "a grey road"),
    "vertical": ("a road from north to south", "a vertical road", "a north south road", "a grey road"),
}


@dataclass(frozen=True)
class Scene:
    """The attributes of one image."""

    cover: str
    kind: str
    colour: str
    count: int
    position: str
    road: str


_ALL_SCENES = [Scene(*values) for values in itertools.product(COVERS, KINDS, COLOURS, COUNTS, POSITIONS, ROADS)]


def scenes_for(count: int, seed: int) -> list[Scene]:
    """``count`` scenes, all distinct while ``count`` allows (a seeded permutation of every combination)."""
    rng = np.random.default_rng([seed, 0])
    scenes: list[Scene] = []
    while len(scenes) < count:
        scenes.extend(_ALL_SCENES[i] for i in rng.permutation(len(_ALL_SCENES)))
    return scenes[:count]


# --- drawing ----------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Noise in [-1, 1] varying over about ``size / cells`` pixels."""
    grid = rng.random((cells, cells), dtype=np.float32)
    image = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image) * 2.0 - 1.0


def _background(cover: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) * (64.0 / size)
    fine = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    if cover == "water":
        base = np.array([38, 92, 165], np.float32)
        phase = rng.uniform(0, 2 * np.pi)
        waves = np.sin(yy * 0.9 + phase + 1.5 * np.sin(xx * 0.15 + phase))
        shade = 12 * waves + 10 * _smooth_noise(rng, size, 4) + 3 * fine
    elif cover == "forest":
        base = np.array([34, 96, 44], np.float32)
        shade = 28 * _smooth_noise(rng, size, 12) + 8 * fine
    elif cover == "desert":
        base = np.array([214, 184, 124], np.float32)
        phase = rng.uniform(0, 2 * np.pi)
        angle = rng.uniform(0.2, 0.8)
        dunes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.35 + phase)
        shade = 16 * dunes + 6 * _smooth_noise(rng, size, 5) + 3 * fine
    elif cover == "farmland":
        palette = np.array([[104, 158, 58], [176, 182, 84], [136, 116, 66], [82, 136, 52]], np.float32)
        out = np.empty((size, size, 3), np.float32)
        edges = np.sort(rng.choice(np.arange(4, size - 3), size=3, replace=False))
        bounds = [0, *edges.tolist(), size]
        vertical = bool(rng.integers(2))
        for k, (start, stop) in enumerate(itertools.pairwise(bounds)):
            colour = palette[(k + int(rng.integers(4))) % 4]
            if vertical:
                out[:, start:stop] = colour
                out[:, start] = colour * 0.7
            else:
                out[start:stop, :] = colour
                out[start, :] = colour * 0.7
        rows = (yy if vertical else xx).astype(np.int64) % 3 == 0  # crop rows across each field
        out[rows] *= 0.9
        return np.clip(out + 4 * fine[..., None], 0, 255)
    else:
        raise ValueError(f"unknown land cover {cover!r}; known: {', '.join(COVERS)}")
    return np.clip(base + shade[..., None], 0, 255)


def _draw_road(draw: ImageDraw.ImageDraw, road: str, size: int, rng: np.random.Generator) -> None:
    if road == "none":
        return
    width = max(3, size // 14)
    at = int(rng.integers(size // 5, size - size // 5))
    half = width // 2
    box = (0, at - half, size, at - half + width) if road == "horizontal" else (at - half, 0, at - half + width, size)
    draw.rectangle(box, fill=(118, 118, 118))
    dash = max(2, size // 16)
    for start in range(0, size, 2 * dash):
        if road == "horizontal":
            draw.line((start, at, start + dash - 1, at), fill=(230, 230, 230))
        else:
            draw.line((at, start, at, start + dash - 1), fill=(230, 230, 230))


def _draw_object(draw: ImageDraw.ImageDraw, kind: str, colour: tuple[int, int, int], x: int, y: int, s: int) -> None:
    shadow = (30, 30, 30) if colour != COLOURS["black"] else (90, 90, 90)
    h = s // 2
    if kind == "building":
        draw.rectangle((x - h + 1, y - h + 1, x + h + 1, y + h + 1), fill=shadow)
        draw.rectangle((x - h, y - h, x + h, y + h), fill=colour)
    elif kind == "tank":
        draw.ellipse((x - h + 1, y - h + 1, x + h + 1, y + h + 1), fill=shadow)
        draw.ellipse((x - h, y - h, x + h, y + h), fill=colour)
    elif kind == "plane":
        w = max(1, s // 6)
        wing = y - s // 6
        draw.rectangle((x - w, y - h - 1, x + w, y + h + 1), fill=colour)  # fuselage
        draw.rectangle((x - h - 1, wing - w, x + h + 1, wing + w), fill=colour)  # wings
        draw.rectangle((x - s // 4, y + h - w, x + s // 4, y + h + 1), fill=colour)  # tail
    else:
        raise ValueError(f"unknown object kind {kind!r}; known: {', '.join(KINDS)}")


def draw_scene(scene: Scene, size: int, rng: np.random.Generator) -> Image.Image:
    """The RGB image of ``scene`` at ``size`` x ``size`` pixels."""
    pixels = _background(scene.cover, size, rng)
    image = Image.fromarray(pixels.astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    _draw_road(draw, scene.road, size, rng)
    s = max(5, size // 7 + int(rng.integers(-1, 2)))
    band = POSITIONS.index(scene.position)
    centre_y = int(size * (band + 0.5) / 3)
    slot = size / scene.count
    margin = s // 2 + 2
    for k in range(scene.count):
        jitter = max(1, int(slot / 2 - s / 2 - 1))
        x = int(slot * (k + 0.5)) + int(rng.integers(-jitter, jitter + 1)) if slot > s + 2 else int(slot * (k + 0.5))
        y = centre_y + int(rng.integers(-(size // 16), size // 16 + 1))
        x = min(max(x, margin), size - 1 - margin)
        y = min(max(y, margin), size - 1 - margin)
        _draw_object(draw, scene.kind, COLOURS[scene.colour], x, y, s)
    return image


# --- captions ---------------------------------------------------------------------------


def _object_phrase(scene: Scene, rnd: random.Random, count: bool, colour: bool, position: bool) -> str:
    singular, plural = rnd.choice(_KIND_WORDS[scene.kind])
    words = []
    if count:
        words.append(rnd.choice(_COUNT_WORDS[scene.count]))
    elif scene.count == 1:
        words.append("a")
    else:
        words.append(rnd.choice(("some", "several", "a few")))
    if colour:
        words.append(rnd.choice(_COLOUR_WORDS[scene.colour]))
    words.append(singular if scene.count == 1 else plural)
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    if position:
        words.append(rnd.choice(_POSITION_WORDS[scene.position]))
    return " ".join(words)


def describe_scene(scene: Scene, rnd: random.Random, count: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """``count`` captions of ``scene``: the first names every attribute, the others a random part."""
    captions = []
    for k in range(count):
        keep = [True] * 5 if k == 0 else [rnd.random() < 0.6 for _ in range(5)]
        with_count, with_colour, with_position, with_cover, with_road = keep
        with_road = with_road and scene.road != "none"
        obj = _object_phrase(scene, rnd, with_count, with_colour, with_position)
        cover = rnd.choice(_COVER_WORDS[scene.cover])
        road = rnd.choice(_ROAD_WORDS[scene.road]) if with_road else ""
        verb = "is" if obj.startswith(("a ", "an ")) and not obj.startswith("a few") else "are"
        if with_cover:
            frames = (
                f"{obj} on {cover}",
                f"an aerial view of {cover} with {obj}",
                f"there {verb} {obj} in {cover}",
                f"{cover} with {obj}",
            )
        else:
            frames = (f"{obj}", f"there {verb} {obj}", f"an aerial image with {obj}")
        caption = rnd.choice(frames)
        if road:
            caption = f"{caption} {rnd.choice(('and', 'beside', 'crossed by', 'near'))} {road}"
        captions.append(caption[0].upper() + caption[1:] + rnd.choice((".", " .", "")))
    return captions


# --- files ------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; these are plain data files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _json_bytes(data: object) -> bytes:
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _paths(root: Path) -> dict[str, Path]:
    return {
        "root": root,
        "train": root / "train.json",
        "val": root / "val.json",
        "image_root": root,
        "scenes": root / "scenes.json",
        "manifest": root / "manifest.json",
    }


def _existing(root: Path) -> dict[str, object] | None:
    """The manifest of a complete dataset under ``root``, None when there is none (or it is incomplete)."""
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        return None
    sizes = manifest.get("sizes")
    if not isinstance(sizes, dict):
        return None
    for name, size in sizes.items():
        try:
            if (root / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return manifest


def write_synthetic_dataset(
    root: str | Path, train_images: int = 500, val_images: int = 100, size: int = 64, seed: int = 0
) -> dict[str, Path]:
    """Draw the synthetic dataset under ``root`` and return its paths.

    Returns ``{"root", "train", "val", "image_root", "scenes", "manifest"}`` (``scenes.json``
    holds each image's attributes); read ``train`` /
    ``val`` with the ``harma_json`` reader (image paths are relative to ``root``, its
    default image root). When ``root`` already holds a complete dataset with the same
    parameters it is returned as it is; a complete one with other parameters is never
    overwritten (FileExistsError). Every file is written to a temporary name and
    renamed; the manifest comes last.
    """
    if train_images < 1 or val_images < 1:
        raise ValueError(f"need at least one train and one val image, got {train_images} and {val_images}")
    if size < 16:
        raise ValueError(f"image size must be at least 16 pixels, got {size}")
    root = Path(root)
    params: dict[str, object] = {
        "train_images": int(train_images),
        "val_images": int(val_images),
        "size": int(size),
        "seed": int(seed),
        "version": VERSION,
    }
    paths = _paths(root)
    existing = _existing(root)
    if existing is not None:
        if existing.get("params") == params:
            return paths
        raise FileExistsError(
            f"{root} already holds a complete synthetic dataset with other parameters {existing.get('params')}; "
            f"asked for {params}. Use another folder, or delete that one first"
        )
    (root / "images").mkdir(parents=True, exist_ok=True)
    paths["manifest"].unlink(missing_ok=True)  # an incomplete dataset: rewritten, complete only at the end

    sizes: dict[str, int] = {}

    def write(name: str, data: bytes) -> None:
        _write_atomic(root / name, data)
        sizes[name] = len(data)

    scenes = scenes_for(train_images + val_images, seed)
    train_entries: list[dict[str, object]] = []
    val_entries: list[dict[str, object]] = []
    for index, scene in enumerate(scenes):
        split, number = ("train", index) if index < train_images else ("val", index - train_images)
        name = f"images/{scene.cover}_{split}_{number:05d}.png"  # class prefix, as RSICD names its files
        write(name, _encode_png(draw_scene(scene, size, np.random.default_rng([seed, 1, index]))))
        captions = describe_scene(scene, random.Random(seed * 1_000_003 + index))
        if split == "train":
            train_entries.extend(
                {"image": name, "caption": caption, "image_id": number, "label_name": scene.cover}
                for caption in captions
            )
        else:
            val_entries.append({"image": name, "caption": captions, "label_name": scene.cover})
    write("train.json", _json_bytes(train_entries))
    write("val.json", _json_bytes(val_entries))
    split_scenes = {"train": scenes[:train_images], "val": scenes[train_images:]}
    write("scenes.json", _json_bytes({split: [asdict(s) for s in items] for split, items in split_scenes.items()}))
    manifest = {
        "generator": GENERATOR,
        "params": params,
        "attributes": {
            "cover": list(COVERS),
            "kind": list(KINDS),
            "colour": list(COLOURS),
            "count": list(COUNTS),
            "position": list(POSITIONS),
            "road": list(ROADS),
        },
        "sizes": sizes,
    }
    _write_atomic(paths["manifest"], _json_bytes(manifest))
    return paths
