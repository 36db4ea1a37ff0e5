"""`harma-zoo train` and `harma-zoo eval` end to end, and the bad input a user meets first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import write_recipe
from PIL import Image

from harma_zoo.cli import main
from harma_zoo.engine.checkpoint import read_metadata
from harma_zoo.engine.evaluation import evaluate_recipe
from harma_zoo.engine.recipe import data_root, load_recipe, load_split
from harma_zoo.resources import recipe_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One short real training run shared by the tests of this module: (recipe, work dir)."""
    folder = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(folder, schedule__epochs=1)
    assert main(["train", str(recipe), "--work-dir", str(folder / "run")]) == 0
    return recipe, folder / "run"


def test_eval_of_the_best_checkpoint_reproduces_its_validation_figures(trained, tmp_path: Path) -> None:
    recipe, run = trained
    out = tmp_path / "metrics.json"
    assert main(["eval", str(recipe), "--checkpoint", str(run / "best.safetensors"), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    stored = read_metadata(run / "best.safetensors")["metrics"]["val"]
    assert written["split"] == "val" and written["metrics"] == pytest.approx(stored, abs=1e-9)


def test_eval_without_a_checkpoint_is_zero_shot(trained, tmp_path: Path, capsys) -> None:
    recipe, _ = trained
    assert main(["eval", str(recipe), "--out", str(tmp_path / "zero.json")]) == 0
    assert json.loads((tmp_path / "zero.json").read_text())["checkpoint"] is None
    assert "zero-shot" in capsys.readouterr().out


def test_a_checkpoint_from_other_backbone_weights_is_refused(trained, capsys) -> None:
    recipe, run = trained
    code = main(
        ["eval", str(recipe), "--checkpoint", str(run / "best.safetensors"), "--cfg-options", "schedule.seed=99"]
    )
    assert code == 2
    assert "fingerprint" in capsys.readouterr().out


def test_a_checkpoint_of_another_method_is_refused(trained, capsys) -> None:
    recipe, run = trained
    argv = ["eval", str(recipe), "--checkpoint", str(run / "best.safetensors"), "--cfg-options", "method.bottleneck=4"]
    assert main(argv) == 2
    assert "holds method" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("section", "value", "listed"), [("backbone", "clip", "open_clip"), ("method", "prompt", "harma")]
)
def test_unknown_backbone_or_method_lists_the_registered_names(tmp_path: Path, capsys, section, value, listed) -> None:
    recipe = write_recipe(tmp_path, **{f"{section}__type": value})
    assert main(["train", str(recipe), "--work-dir", str(tmp_path / "run")]) == 2
    message = capsys.readouterr().out
    assert f"unknown {'backbone family' if section == 'backbone' else 'method'} {value!r}" in message
    assert listed in message


def _jpeg_dataset(root: Path, images: int = 6) -> None:
    """A small real dataset of JPEG files in the HarMA JSON layout."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    train, val = [], []
    for index in range(images):
        name = f"images/scene_{index}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / name, quality=90)
        captions = [f"scene number {index} seen from above", f"an aerial image {index}"]
        train += [{"image": name, "caption": caption, "image_id": index} for caption in captions]
        val.append({"image": name, "caption": captions})
    (root / "train.json").write_text(json.dumps(train))
    (root / "val.json").write_text(json.dumps(val))


def _recipe_on(root: Path, tmp_path: Path, **changes) -> Path:
    data = {"reader": "harma_json", "root": str(root), "image_root": "", "train": "train.json", "val": "val.json"}
    return write_recipe(tmp_path, data={**data, "max_words": 30, **changes}, schedule__batch_size=4, schedule__epochs=1)


def test_a_missing_image_file_is_named(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    _jpeg_dataset(root)
    (root / "images" / "scene_3.jpg").unlink()
    assert main(["train", str(_recipe_on(root, tmp_path)), "--work-dir", str(tmp_path / "run")]) == 2
    assert "scene_3.jpg" in capsys.readouterr().out


def test_a_corrupt_jpeg_fails_unless_skipped_and_then_it_is_counted(tmp_path: Path, capsys, caplog) -> None:
    root = tmp_path / "data"
    _jpeg_dataset(root)
    corrupt = root / "images" / "scene_2.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # a truncated download
    assert main(["train", str(_recipe_on(root, tmp_path)), "--work-dir", str(tmp_path / "run")]) == 2
    assert "scene_2.jpg" in capsys.readouterr().out
    recipe = _recipe_on(root, tmp_path, skip_unreadable=True)
    assert main(["train", str(recipe), "--work-dir", str(tmp_path / "run2")]) == 0
    assert "skipped 1 unreadable image" in caplog.text  # a warning of the library's logger
    assert read_metadata(tmp_path / "run2" / "best.safetensors")["dataset"]["train_images"] == 5


@pytest.mark.parametrize(
    ("content", "expected"), [("", "empty"), ('[{"image": ', "JSON"), ('[{"image": "a.jpg"}]', "caption")]
)
def test_an_empty_or_malformed_annotation_file_is_named(tmp_path: Path, capsys, content: str, expected: str) -> None:
    root = tmp_path / "data"
    _jpeg_dataset(root)
    (root / "train.json").write_text(content)
    assert main(["train", str(_recipe_on(root, tmp_path)), "--work-dir", str(tmp_path / "run")]) == 2
    message = capsys.readouterr().out
    assert "train.json" in message and expected in message


def test_a_recipe_that_does_not_exist_lists_the_known_ones(capsys) -> None:
    assert main(["train", "harma_nowhere"]) == 2
    message = capsys.readouterr().out
    assert "no recipe 'harma_nowhere'" in message and "full_tiny-vit_rsicd" in message


def test_the_default_data_root_is_found_from_any_directory(shared_data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HARMA_ZOO_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # ../shared/data is not beside this folder; it is beside the checkout
    cfg = load_recipe(recipe_path("harma_tiny-vit-rsicd-source_rsicd"), {"data.limit": 3})
    assert cfg.data.root == "../shared/data/rsicd"
    assert data_root(cfg).resolve() == (shared_data / "rsicd").resolve()
    val = load_split(cfg, "val")
    assert val.num_images == 3 and val.num_captions == 15


def test_a_data_root_found_nowhere_names_the_variable(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HARMA_ZOO_DATA", str(tmp_path / "nowhere"))
    assert main(["eval", "harma_tiny-vit_rsicd", "--limit", "2"]) == 2
    message = " ".join(capsys.readouterr().out.split())
    assert f"{tmp_path / 'nowhere' / 'rsicd'} does not exist" in message and "set HARMA_ZOO_DATA" in message


@pytest.mark.parametrize("limit", [0, -2, "ten", True])
def test_data_limit_must_be_a_positive_number_of_images(trained, limit) -> None:
    recipe, _ = trained
    with pytest.raises(ValueError, match=r"data\.limit must be (at least 1|an integer or None), got"):
        load_recipe(recipe, {"data.limit": limit})  # refused with the recipe, before any data is read


@pytest.mark.needs_gpu
def test_eval_runs_on_the_gpu_when_asked(trained) -> None:
    recipe, run = trained
    done = evaluate_recipe(load_recipe(recipe), run / "best.safetensors", device="cuda")
    assert done.device.startswith("cuda") and done.metrics["mR"] == pytest.approx(
        read_metadata(run / "best.safetensors")["metrics"]["val"]["mR"], abs=0.5
    )
