"""The built-in synthetic dataset: deterministic, readable, described, and never clobbered."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harma_zoo.data.datasets import CaptionPairs, collate_pairs
from harma_zoo.data.images import check_images
from harma_zoo.data.readers import read_annotations
from harma_zoo.data.synthetic import (
    _COLOUR_WORDS,
    _COUNT_WORDS,
    _COVER_WORDS,
    _KIND_WORDS,
    Scene,
    describe_scene,
    draw_scene,
    scenes_for,
    write_synthetic_dataset,
)
from harma_zoo.data.transforms import eval_transform

SMALL = {"train_images": 24, "val_images": 8, "size": 48}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path / "a", **SMALL, seed=5)
    write_synthetic_dataset(tmp_path / "b", **SMALL, seed=5)
    write_synthetic_dataset(tmp_path / "c", **SMALL, seed=6)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 24 + 8 + 4  # images, train.json, val.json, scenes.json, manifest.json
    assert a == b
    assert len(a) == len(c)
    assert a["train.json"] != c["train.json"]
    images_a, images_c = ({v for k, v in files.items() if k.endswith(".png")} for files in (a, c))
    assert images_a != images_c
    assert not [name for name in a if Path(name).name.startswith(".")]  # no temporary files left


def test_readable_by_the_harma_json_reader(tmp_path: Path) -> None:
    paths = write_synthetic_dataset(tmp_path / "syn", **SMALL)
    train = read_annotations("harma_json", paths["train"])
    val = read_annotations("harma_json", paths["val"], image_root=paths["image_root"])
    assert (train.num_images, train.num_captions) == (24, 120)
    assert (val.num_images, val.num_captions) == (8, 40)
    assert set(Counter(train.caption_image).values()) == set(Counter(val.caption_image).values()) == {5}
    raw = json.loads(paths["train"].read_text())
    assert [entry["image_id"] for entry in raw[:10]] == [0] * 5 + [1] * 5
    for split in (train, val):
        checked, skipped = check_images(split)
        assert checked is split and skipped == []
    image = Image.open(train.images[0])
    assert image.size == (48, 48) and image.mode == "RGB"
    pairs = CaptionPairs(val, eval_transform(32, (0.5,) * 3, (0.5,) * 3))
    batch = collate_pairs([pairs[i] for i in range(6)])
    assert batch["pixels"].shape == (6, 3, 32, 32) and batch["image_ids"].tolist() == [0] * 5 + [1]


def test_second_call_returns_without_rewriting(tmp_path: Path) -> None:
    root = tmp_path / "syn"
    first = write_synthetic_dataset(root, **SMALL)
    before = _stamps(root)
    assert write_synthetic_dataset(root, **SMALL) == first
    assert _stamps(root) == before


def test_other_parameters_never_clobber_a_complete_dataset(tmp_path: Path) -> None:
    root = tmp_path / "syn"
    write_synthetic_dataset(root, **SMALL)
    before = _stamps(root)
    with pytest.raises(FileExistsError, match="other parameters"):
        write_synthetic_dataset(root, **{**SMALL, "train_images": 30})
    assert _stamps(root) == before


def test_an_incomplete_dataset_is_rewritten(tmp_path: Path) -> None:
    root = tmp_path / "syn"
    write_synthetic_dataset(root, **SMALL)
    complete = _files(root)
    next((root / "images").glob("*_train_00003.png")).unlink()
    (root / "val.json").write_text("[]")
    write_synthetic_dataset(root, **SMALL)
    assert _files(root) == complete


def test_scenes_are_distinct_and_captions_describe_them() -> None:
    scenes = scenes_for(600, seed=0)
    assert len(set(scenes)) == 600  # every image its own combination of attributes
    rnd = random.Random(0)
    shared_captions: Counter = Counter()
    for scene in scenes[:200]:
        captions = describe_scene(scene, rnd)
        assert len(captions) == 5
        full = captions[0].lower()  # the first caption names every attribute
        assert any(word in full for word in _COVER_WORDS[scene.cover])
        assert any(word in full for pair in _KIND_WORDS[scene.kind] for word in pair)
        assert any(word in full for word in _COLOUR_WORDS[scene.colour])
        assert any(full.startswith(w) or f" {w} " in full for w in _COUNT_WORDS[scene.count])
        assert ("road" in full) == (scene.road != "none")
        shared_captions.update(set(captions))
    # some captions fit more than one image: retrieval is not trivial
    assert sum(1 for count in shared_captions.values() if count > 1) > 0


def test_drawn_attributes_are_visible() -> None:
    base = Scene("water", "building", "red", 3, "top", "none")
    water = np.asarray(draw_scene(base, 64, np.random.default_rng(0))).astype(int)
    desert = np.asarray(draw_scene(replace(base, cover="desert"), 64, np.random.default_rng(0)))
    assert water[..., 2].mean() > water[..., 0].mean() + 60  # blue water
    assert desert[..., 0].mean() > 150  # sandy desert
    red = (water[..., 0] > 180) & (water[..., 1] < 80) & (water[..., 2] < 80)
    rows = np.nonzero(red.any(axis=1))[0]
    assert red.sum() > 3 * 25 and rows.max() < 64 // 2  # three red buildings, in the top part
    bottom = np.asarray(draw_scene(replace(base, position="bottom"), 64, np.random.default_rng(0)))
    red_bottom = (bottom[..., 0] > 180) & (bottom[..., 1] < 80)
    assert np.nonzero(red_bottom.any(axis=1))[0].min() > 64 // 2
