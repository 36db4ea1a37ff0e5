"""The public API: a zoo name (or an adapter file) to a working model in one call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import harma_zoo
from harma_zoo.data.readers import read_annotations
from harma_zoo.engine.evaluation import evaluate
from harma_zoo.hub.index import ZooIndex

TRANSFER = "harma_tiny-vit-rsicd-source_rsicd"
DEMO = "harma-small-vit-synthetic-demo"


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARMA_ZOO_HOME", str(tmp_path / "zoo-home"))
    monkeypatch.delenv("HARMA_ZOO_REGISTRY", raising=False)
    return tmp_path / "zoo-home" / "downloads"


def test_import_is_instant_and_the_api_loads_on_first_use() -> None:
    code = (
        "import sys, harma_zoo; assert 'torch' not in sys.modules; "
        "harma_zoo.load_pretrained; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        harma_zoo.nothing  # noqa: B018


def test_a_published_adapter_loads_by_name_from_an_empty_cache_and_scores_its_figures(
    shipped: ZooIndex, empty_cache: Path, shared_data: Path
) -> None:
    entry = shipped.checkpoint(TRANSFER)
    backbone = shipped.backbone(entry.backbone)
    model, transform, tokenizer = harma_zoo.load_pretrained(TRANSFER)
    # both files came into the empty cache, each under the sha256 the registry publishes (verified)
    assert (empty_cache / entry.sha256).is_dir() and (empty_cache / backbone.weights.sha256).is_dir()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.method.options.shared_towers == tuple(entry.method["shared_towers"])
    val = read_annotations("harma_json", shared_data / "rsicd" / "rsicd_val.json", shared_data / "rsicd" / "images")
    metrics = evaluate(model, val, batch_size=256)
    assert metrics["mR"] == pytest.approx(entry.metrics["val"]["mR"], abs=0.05)
    assert transform.transforms[0].size == (model.backbone.image_size, model.backbone.image_size)


def test_an_adapter_file_loads_with_the_backbone_it_records(shipped: ZooIndex, empty_cache: Path) -> None:
    by_name = harma_zoo.load_pretrained(TRANSFER)
    adapter = next(empty_cache.glob(f"{shipped.checkpoint(TRANSFER).sha256}/*.safetensors"))
    by_file = harma_zoo.load_pretrained(adapter, device="cpu")  # its header names zoo:harma-tiny-vit-rsicd-source
    captions = ["many planes are parked near a terminal", "Green, rectangular fields!"]
    with torch.no_grad():
        assert torch.equal(by_name.model.encode_text(by_name.tokenizer(captions)),
                           by_file.model.encode_text(by_file.tokenizer(captions)))  # fmt: skip
    cleaned = by_name.tokenizer(["green rectangular fields"])["input_ids"]  # as training cleaned captions
    assert torch.equal(by_name.tokenizer("Green, rectangular fields!")["input_ids"], cleaned)


def test_an_adapter_on_random_backbone_weights_rebuilds_them_from_the_run_seed(empty_cache: Path) -> None:
    model, _, _ = harma_zoo.load_pretrained(DEMO)  # would raise on a fingerprint mismatch
    assert model.backbone.arch == "harma-small-vit"


def test_an_unknown_name_lists_the_published_ones(empty_cache: Path) -> None:
    with pytest.raises(KeyError, match=f"no checkpoint entry 'nope'.*{TRANSFER}"):
        harma_zoo.load_pretrained("nope")


def test_the_lists_come_from_the_registry_and_the_recipes(shipped: ZooIndex) -> None:
    assert [entry.name for entry in harma_zoo.list_backbones()] == list(shipped.backbones)
    assert [entry.name for entry in harma_zoo.list_checkpoints()] == list(shipped.checkpoints)
    assert TRANSFER in harma_zoo.list_recipes() and "pretrain_tiny-vit_rsicd-source" in harma_zoo.list_recipes()
