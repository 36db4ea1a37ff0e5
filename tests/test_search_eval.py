"""Searching RSICD val with the published RSICD adapter reproduces ``harma-zoo eval``'s text->image recall exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from search_helpers import TRANSFER

from harma_zoo.cli import main
from harma_zoo.data.readers import read_annotations
from harma_zoo.hub.index import ZooIndex
from harma_zoo.search import SearchIndex, index_archive


def test_the_ranks_search_returns_for_every_caption_give_evals_t2i_recall(
    shared_data: Path, shipped: ZooIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARMA_ZOO_HOME", str(tmp_path / "zoo-home"))
    monkeypatch.setenv("HARMA_ZOO_DATA", str(shared_data))
    monkeypatch.delenv("HARMA_ZOO_REGISTRY", raising=False)
    rsicd = shared_data / "rsicd"
    val = read_annotations("harma_json", rsicd / "rsicd_val.json", rsicd / "images")
    listing = tmp_path / "val.txt"
    listing.write_text("".join(f"{path}\n" for path in val.images))  # image i gets id i
    index_archive(listing, TRANSFER, tmp_path / "index", batch_size=64, workers=2, progress=False)

    adapter = next((tmp_path / "zoo-home").rglob(f"{shipped.checkpoint(TRANSFER).sha256}/*.safetensors"))
    out = tmp_path / "eval.json"
    assert main(["eval", TRANSFER, "--checkpoint", str(adapter), "--batch-size", "64", "--out", str(out)]) == 0
    evaluated = json.loads(out.read_text())["metrics"]

    index = SearchIndex(tmp_path / "index")
    assert len(index) == val.num_images == 1966 and len(val.captions) == 9830
    results = index.search_texts(val.captions, k=10, batch_size=64)
    own = val.caption_image
    ranks = np.array([next((h.rank for h in hits if h.id == own[j]), 11) for j, hits in enumerate(results)])
    for k in (1, 5, 10):
        assert 100.0 * int((ranks <= k).sum()) / len(ranks) == evaluated[f"t2i_R@{k}"], k
    assert evaluated["t2i_R@10"] > evaluated["t2i_R@1"] > 0  # a real retrieval, not an empty or constant one
