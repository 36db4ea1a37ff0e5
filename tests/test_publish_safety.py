"""`harma-zoo publish` and `load_pretrained` on checkpoints and run folders that try to run code, and on a
checkpoint that is replaced while it is published (a run still training). Real files, a real training run;
a marker folder that the planted code would create proves whether it ran."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from engine_helpers import write_recipe
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from harma_zoo.api import load_pretrained
from harma_zoo.cli import main
from harma_zoo.engine.checkpoint import read_metadata
from harma_zoo.engine.recipe import load_recipe
from harma_zoo.engine.train import train
from harma_zoo.hub.download import sha256_file
from harma_zoo.hub.index import load_index
from harma_zoo.zoo import publish as publish_module

PROJECT = Path(__file__).resolve().parents[1]
SMALL = {"train_images": 8, "val_images": 4, "size": 32, "seed": 0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.safetensors of a real one-epoch run of the tiny recipe."""
    folder = tmp_path_factory.mktemp("run")
    train(load_recipe(write_recipe(folder, schedule__epochs=1, data__synthetic=SMALL)), folder / "work")
    return folder / "work" / "best.safetensors"


def _rewritten(source: Path, target: Path, *, add: float = 0.0, **fields: object) -> Path:
    """``source`` with header fields replaced (dicts as JSON, as checkpoints store them) and ``add`` on every tensor."""
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    for key, value in fields.items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor + add for name, tensor in load_file(source).items()}, str(target), metadata=metadata)
    return target


def _planted(path: Path, marker: Path) -> Path:
    path.write_text(f"import os\nos.mkdir({str(marker)!r})\n")
    return path


def _without_dataset_name(checkpoint: Path) -> dict:
    dataset = read_metadata(checkpoint)["dataset"]
    dataset.pop("name")  # as checkpoints made before the name was recorded
    return dataset


def test_publish_runs_no_recipe_of_the_run_folder(checkpoint: Path, registry: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code-ran"
    run = tmp_path / "run"
    _rewritten(checkpoint, run / "best.safetensors", recipe="planted", dataset=_without_dataset_name(checkpoint))
    _planted(run / "planted.py", marker)  # RUN_DIR/<recipe>.py, named by the checkpoint's header
    assert main(["publish", str(run), "--registry", str(registry)]) == 2
    assert not marker.exists()
    assert "pass --dataset" in capsys.readouterr().out
    assert main(["publish", str(run), "--registry", str(registry), "--dataset", "synthetic"]) == 0
    assert not marker.exists()


def test_publish_runs_no_file_a_header_names_by_path(checkpoint: Path, registry: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code-ran"
    (tmp_path / "elsewhere").mkdir()
    planted = _planted(tmp_path / "elsewhere" / "evil.py", marker)  # named by its absolute path
    crafted = _rewritten(checkpoint, tmp_path / "c" / "best.safetensors", recipe=str(planted),
                         dataset=_without_dataset_name(checkpoint))  # fmt: skip
    assert main(["publish", str(crafted), "--registry", str(registry), "--name", "crafted"]) == 2
    assert not marker.exists()


def test_publish_reads_the_dataset_from_the_header(checkpoint: Path, registry: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent, run)
    _planted(run / "tiny_recipe.py", tmp_path / "code-ran")  # mmengine's copy of the recipe, here planted
    assert main(["publish", str(run), "--registry", str(registry)]) == 0
    assert load_index(registry).checkpoint("tiny_recipe").dataset["name"] == "synthetic"
    assert not (tmp_path / "code-ran").exists()


def test_load_pretrained_runs_no_file_a_header_names(checkpoint: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    (tmp_path / "elsewhere").mkdir()
    planted = _planted(tmp_path / "elsewhere" / "seeded.py", marker)
    crafted = _rewritten(checkpoint, tmp_path / "c.safetensors", recipe=str(planted), seed="null")
    with pytest.raises(ValueError, match="fingerprint"):  # the random backbone cannot be rebuilt without its seed
        load_pretrained(crafted)
    assert not marker.exists()


def test_publish_describes_the_very_file_it_copies(
    checkpoint: Path, registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's best.safetensors is replaced (os.replace, as training does) right after publish first reads it."""
    run = tmp_path / "run"
    first = _rewritten(checkpoint, run / "best.safetensors", dataset={"name": "synthetic"})
    newer = _rewritten(checkpoint, tmp_path / "newer.safetensors", add=1.0, dataset={"name": "synthetic"},
                       extra={"epoch": 99, "selected_on": "val"}, metrics={"val": {"mR": 99.0}})  # fmt: skip
    original_read = publish_module.read_metadata
    replaced = []

    def read_then_replace(path):
        metadata = original_read(path)
        if not replaced:
            os.replace(newer, first)  # the training run writes its new best checkpoint
            replaced.append(path)
        return metadata

    monkeypatch.setattr(publish_module, "read_metadata", read_then_replace)
    entry = publish_module.publish(run, registry=registry, name="racing")
    assert replaced
    (stored,) = (registry.parent / "zoo_files").glob("racing-*.safetensors")
    digest = sha256_file(stored)
    assert (entry.sha256, entry.size) == (digest, stored.stat().st_size)
    assert stored.name == f"racing-{digest[:8]}.safetensors"
    metadata = read_metadata(stored)
    assert entry.epoch == metadata["extra"]["epoch"] and entry.metrics == metadata["metrics"]
    assert yaml.safe_load((registry / "checkpoints.yaml").read_text())[0]["sha256"] == digest
    assert not list((registry.parent / "zoo_files").glob(".*tmp"))  # the staged copy was renamed, not left
