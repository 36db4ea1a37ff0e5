"""Recipes as a careless or hostile user writes them: typos, wrong types, options nobody reads, readers with
options, a YAML recipe that tries to run code, annotation files that reach outside the image root, and an
image whose decoded size is a memory bomb. Real recipe files, real annotation files, real images."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from engine_helpers import write_recipe
from PIL import Image

from harma_zoo.cli import main
from harma_zoo.engine.recipe import load_recipe, load_split
from harma_zoo.engine.recipe_schema import RecipeError
from harma_zoo.resources import project_folder

SMALL = {"train_images": 8, "val_images": 4, "size": 32, "seed": 0}


def _train(capsys: pytest.CaptureFixture[str], recipe: Path, *options: str) -> tuple[int, str]:
    code = main(["train", str(recipe), "--work-dir", str(recipe.parent / "run"), *options])
    return code, capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("schedule.epoch=1", "schedule.epoch is not an option harma-zoo reads; did you mean schedule.epochs?"),
        ("schedule.epochs=three", "schedule.epochs must be an integer, got 'three'"),
        ("schedule.lr=abc", "schedule.lr must be a number, got 'abc'"),
        ("method.bottleneck=abc", "method.bottleneck must be an integer or None, got 'abc'"),
        ("method.bottleneck=-5", "bottleneck must be a positive integer, got -5"),
        ("method.heads=3", "bottleneck (16) must be a multiple of heads (3)"),
        ("schedule.batch_size=0", "schedule.batch_size must be at least 1, got 0"),
        ("schedule.decay=step", "schedule.decay must be one of 'linear', 'cosine', got 'step'"),
        ("load_from=/tmp/x.pth", "load_from is not a section harma-zoo reads"),
        ("backbone.pretraind=x.pt", "did you mean backbone.pretrained?"),
        ("loss.margn=0.1", "did you mean loss.margin?"),
        ("data.skip_unreadabel=True", "did you mean data.skip_unreadable?"),
        ("data.reader.restval_as_train=False", "data.reader.restval_as_train is not an option"),
    ],
)
def test_a_wrong_option_names_the_key_and_what_was_expected(tmp_path: Path, capsys, override: str, expected: str):
    recipe = write_recipe(tmp_path, data__synthetic=SMALL, data__reader={"type": "harma_json"})
    code, out = _train(capsys, recipe, "--cfg-options", override)
    assert code == 2
    assert expected in " ".join(out.split()) and str(recipe) in out
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_every_shipped_recipe_is_valid_and_names_its_reader_as_a_dict() -> None:
    for path in sorted(project_folder("recipes").glob("*.py")):
        cfg = load_recipe(path)
        assert isinstance(cfg.data.reader, dict) and cfg.data.reader["type"] == "harma_json", path


def test_a_reader_name_alone_stays_a_shorthand(tmp_path: Path) -> None:
    cfg = load_recipe(write_recipe(tmp_path, data__reader="harma_json", data__synthetic=SMALL))
    assert load_split(cfg, "val").num_images == 4


def _png(path: Path, seed: int, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _recipe_for(tmp_path: Path, root: Path, reader: dict, train: str, **data) -> Path:
    data = {"reader": reader, "root": str(root), "train": train, "val": train, "max_words": 30, **data}
    return write_recipe(tmp_path, data=data)


def test_amfmn_options_reach_the_reader(tmp_path: Path) -> None:
    root = tmp_path / "amfmn"
    for index in range(3):
        _png(root / f"scene_{index}.png", index)
    (root / "train_caps.txt").write_text("".join(f"scene {i} caption {k}\n" for i in range(3) for k in range(2)))
    (root / "names.txt").write_text("".join(f"scene_{i}.png\n" for i in range(3)))
    reader = {"type": "amfmn", "names_file": str(root / "names.txt"), "captions_per_image": 2}
    split = load_split(load_recipe(_recipe_for(tmp_path, root, reader, "train_caps.txt")), "train")
    assert (split.num_images, split.num_captions) == (3, 6)
    assert split.captions_of(1) == [2, 3]
    with pytest.raises(RecipeError, match="captions_per_image must be an integer"):
        load_recipe(_recipe_for(tmp_path, root, {**reader, "captions_per_image": "two"}, "train_caps.txt"))


def test_karpathy_options_reach_the_reader(tmp_path: Path) -> None:
    root = tmp_path / "karpathy"
    images = []
    for index, split in enumerate(("train", "restval", "val")):
        _png(root / f"scene_{index}.png", index)
        images.append({"filename": f"scene_{index}.png", "split": split, "sentences": [{"raw": f"scene {index}"}]})
    (root / "dataset.json").write_text(json.dumps({"images": images}))
    for restval_as_train, count in ((True, 2), (False, 1)):
        reader = {"type": "karpathy", "restval_as_train": restval_as_train}
        recipe = _recipe_for(tmp_path, root, reader, "dataset.json", train_split="train")
        assert load_split(load_recipe(recipe), "train").num_images == count


def test_parquet_options_reach_the_reader(tmp_path: Path) -> None:
    root = tmp_path / "parquet"
    root.mkdir()
    _png(tmp_path / "one.png", 0)
    table = pa.table({"picture": [(tmp_path / "one.png").read_bytes()], "captions": [["one scene from above"]]})
    pq.write_table(table, root / "train.parquet")
    recipe = _recipe_for(tmp_path, root, {"type": "parquet", "image_column": "picture"}, "train.parquet")
    assert load_split(load_recipe(recipe), "train").captions == ["one scene from above"]
    with pytest.raises(RecipeError, match="did you mean data.reader.image_column"):
        load_recipe(_recipe_for(tmp_path, root, {"type": "parquet", "image_colum": "picture"}, "train.parquet"))


# --- YAML recipes are data ----------------------------------------------------------------------
def test_a_yaml_recipe_cannot_run_code(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code-ran"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: !!python/object/apply:os.mkdir ['{marker}']\nschedule: {{epochs: 1}}\n")
    code, out = _train(capsys, recipe)
    assert code == 2 and not marker.exists()
    assert "recipe.yaml: not a safe YAML recipe" in out
    base = tmp_path / "base.yml"
    base.write_text(f"loss: !!python/object/apply:os.mkdir ['{marker}']\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: ['./base.yml']\n")
    assert _train(capsys, child)[0] == 2 and not marker.exists()  # nor through a _base_ file


def test_a_yaml_recipe_of_plain_data_loads(tmp_path: Path) -> None:
    import yaml

    python_recipe = load_recipe(write_recipe(tmp_path, data__synthetic=SMALL))
    recipe = tmp_path / "same.yaml"
    recipe.write_text(yaml.safe_dump({k: v for k, v in python_recipe.to_dict().items() if k != "name"}))
    assert load_recipe(recipe).to_dict() == {**python_recipe.to_dict(), "name": "same"}


# --- images -------------------------------------------------------------------------------------
def _harma_json(root: Path, names: list[str]) -> None:
    entries = [{"image": name, "caption": [f"an aerial scene {i}"]} for i, name in enumerate(names)]
    (root / "split.json").write_text(json.dumps(entries))


def test_annotation_paths_stay_under_the_image_root(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    _png(root / "images" / "inside.png", 0)
    _png(tmp_path / "secret.png", 1)
    _harma_json(root, ["inside.png", "../../secret.png"])
    recipe = _recipe_for(tmp_path, root, {"type": "harma_json"}, "split.json", image_root="images")
    code, out = _train(capsys, recipe)
    assert code == 2
    assert "outside the image root" in out and "secret.png" in out and "images_outside_root" in out
    allowed = load_recipe(recipe, {"data.images_outside_root": True})
    assert load_split(allowed, "val").num_images == 2  # the recipe says so: allowed


def _huge_png(path: Path, side: int) -> None:
    """A valid PNG of side x side black pixels (1 bit each): a few kB on disk, ``side**2`` pixels decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte + the packed row
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_an_image_too_large_to_decode_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _png(root / "small.png", 0)
    _huge_png(root / "bomb.png", 12_000)
    assert (root / "bomb.png").stat().st_size < 100_000
    _harma_json(root, ["small.png", "bomb.png"])
    recipe = _recipe_for(tmp_path, root, {"type": "harma_json"}, "split.json")
    with pytest.raises(ValueError, match=r"bomb\.png.*12000 x 12000 = 144,000,000 pixels.*max_image_pixels"):
        load_split(load_recipe(recipe), "val")
    _harma_json(root, ["small.png"])
    assert load_split(load_recipe(recipe), "val").num_images == 1  # 40 x 40: well under the default
    with pytest.raises(ValueError, match="1,600 pixels, above the limit of 1,000"):
        load_split(load_recipe(recipe, {"data.max_image_pixels": 1000}), "val")
