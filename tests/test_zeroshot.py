"""Zero-shot scene classification: the metrics, class labels from file names and folders, the eval task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_helpers import write_recipe
from PIL import Image

from harma_zoo.cli import main
from harma_zoo.data.readers import read_class_folders
from harma_zoo.engine.evaluation import build_for_evaluation, evaluate_with_images
from harma_zoo.engine.recipe import load_recipe, load_split
from harma_zoo.engine.recipe_schema import RecipeError, ZeroshotSection, validate_recipe
from harma_zoo.engine.zeroshot import (
    class_prompts,
    classification_metrics,
    classify,
    labelled_images,
    zeroshot_section,
)


def test_metrics_count_top_k_per_class_recall_and_confusion() -> None:
    classes = ["a", "b", "c"]
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.0],  # a -> a
            [0.2, 0.7, 0.1],  # a -> b (second: top-2 but not top-1)
            [0.0, 0.8, 0.1],  # b -> b
            [0.5, 0.1, 0.4],  # c -> a
        ]
    )
    labels = torch.tensor([0, 0, 1, 2])
    outcome = classification_metrics(scores, labels, classes)
    assert outcome["metrics"]["top1"] == pytest.approx(50.0)
    assert outcome["metrics"]["top5"] == pytest.approx(100.0)  # three classes: every one is in the top 5
    assert outcome["per_class_recall"] == pytest.approx({"a": 50.0, "b": 100.0, "c": 0.0})
    assert outcome["metrics"]["mean_class_recall"] == pytest.approx(50.0)  # not the 50% of images: per class
    assert outcome["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_a_collapsed_model_scores_zero_not_hundred() -> None:
    """Every class scored alike: a tie with a wrong class counts against the right one."""
    labels = torch.arange(6) % 3
    outcome = classification_metrics(torch.zeros(6, 3), labels, ["a", "b", "c"])
    assert outcome["metrics"]["top1"] == 0.0 and outcome["metrics"]["mean_class_recall"] == 0.0
    assert sum(map(sum, outcome["confusion"])) == 6 and all(row[i] == 0 for i, row in enumerate(outcome["confusion"]))


def test_classes_come_from_file_names_or_folders_and_prompts_name_them(tmp_path: Path) -> None:
    for name in ("airport/1.png", "airport/2.png", "denseresidential/7.png", "beach/3.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    archive = read_class_folders(tmp_path)
    assert archive.names == ["airport/1.png", "airport/2.png", "beach/3.png", "denseresidential/7.png"]
    assert archive.captions == ["airport", "airport", "beach", "denseresidential"]

    section = ZeroshotSection(labels="folder", class_names={"denseresidential": "dense residential area"})
    chosen = labelled_images(archive, section)
    assert chosen.classes == ["airport", "beach", "denseresidential"] and chosen.labels.tolist() == [0, 0, 1, 2]
    prompts = class_prompts(chosen.classes, ZeroshotSection(templates=("A photo of {}.", "{}, seen from above")))
    assert prompts[:2] == ["a photo of airport", "airport seen from above"]
    assert class_prompts(["denseresidential"], section)[0] == "an aerial photograph of dense residential area"

    with pytest.raises(ValueError, match="at least two classes"):  # "1.png" has no class prefix
        labelled_images(archive, ZeroshotSection(labels="file_name"))
    restricted = labelled_images(archive, ZeroshotSection(labels="folder", classes=["beach", "airport"]))
    assert restricted.classes == ["beach", "airport"] and restricted.unlabelled == 1


def test_a_folder_without_class_folders_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_class_folders(tmp_path / "missing")
    (tmp_path / "empty" / "airport").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no images; expected .*<class>/<image>"):
        read_class_folders(tmp_path / "empty")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"labels": "prefix"}, r"zeroshot.labels must be one of 'file_name', 'folder'"),
        ({"templates": ["a photo"]}, r"'a photo' must hold one '\{\}'"),
        ({"template": ["a {}"]}, r"zeroshot.template is not an option.*did you mean zeroshot.templates"),
    ],
)
def test_a_bad_zeroshot_section_names_its_key(tmp_path: Path, section: dict, message: str) -> None:
    cfg = load_recipe(write_recipe(tmp_path))
    cfg.zeroshot = section
    with pytest.raises(RecipeError, match=message):
        validate_recipe(cfg, "test")


def test_eval_task_writes_the_retrieval_shape_and_a_confusion_matrix(tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, zeroshot={"labels": "file_name"})
    out, png = tmp_path / "zeroshot.json", tmp_path / "confusion.png"
    argv = ["eval", str(recipe), "--task", "zeroshot-classification", "--out", str(out), "--confusion", str(png)]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(out.read_text())
    assert printed == written
    assert written["task"] == "zeroshot-classification" and written["split"] == "val"
    assert set(written["metrics"]) == {"top1", "top5", "mean_class_recall"}
    assert all(0.0 <= value <= 100.0 for value in written["metrics"].values())
    classes = written["classes"]
    assert len(classes) >= 2 and written["images"] + written["unlabelled_images"] == 8
    assert sum(map(sum, written["confusion"])) == written["images"] and len(written["confusion"]) == len(classes)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", str(recipe), "--confusion", str(png)]) == 2  # a retrieval has no confusion matrix
    assert "--confusion goes with --task zeroshot-classification" in capsys.readouterr().out


def test_classifying_with_the_retrieval_pass_embeddings_matches_embedding_again(tmp_path: Path) -> None:
    """The bench hands classify the split's image embeddings from retrieval: the same outcome, one pass fewer."""
    cfg = load_recipe(write_recipe(tmp_path, zeroshot={"labels": "file_name"}))
    model, _ = build_for_evaluation(cfg, None)
    split = load_split(cfg, "val")
    section = zeroshot_section(cfg)
    _, image_emb = evaluate_with_images(model, split)
    embedded_again = classify(model, split, section)

    def no_second_pass(pixels: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the images were embedded again")

    model.encode_image = no_second_pass
    assert classify(model, split, section, split_image_emb=image_emb) == embedded_again
    with pytest.raises(ValueError, match=r"val.json: 3 image embeddings given for 8 images"):
        classify(model, split, section, split_image_emb=image_emb[:3])
