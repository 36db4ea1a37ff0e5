"""Every registered backbone family, tried with every method: a new family is covered once registered."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harma_zoo.model import build_backbone, build_method
from harma_zoo.registry import BACKBONES, METHODS, get_class, registered_names

FAMILIES = registered_names(BACKBONES)
CAPTIONS = ["an airport with two runways", "a river crossing farmland", "a stadium next to a parking lot"]
SMALL_HARMA = {"type": "harma", "bottleneck": 8, "shared_width": 8, "heads": 2}
# every registered method, with small sizes where its defaults are CLIP-sized
SMALL = {"harma": SMALL_HARMA, "lora": {"type": "lora", "rank": 2}, "adapter": {"type": "adapter", "bottleneck": 4}}
METHOD_CONFIGS = [SMALL.get(name, {"type": name}) for name in registered_names(METHODS)]


def tiny(family: str):
    return build_backbone({"type": family, **get_class(BACKBONES, family).tiny_options()})


def embed(backbone) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    pixels = torch.randn(3, 3, backbone.image_size, backbone.image_size, generator=generator)
    return backbone.encode_image(pixels), backbone.encode_text(backbone.tokenize(CAPTIONS))


def test_the_built_in_families_are_registered() -> None:
    assert {"open_clip", "hf_clip", "hf_siglip", "hf_blip"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shared_towers", [("text",), ("image", "text")])
def test_untrained_harma_leaves_the_embeddings_unchanged(family: str, shared_towers) -> None:
    backbone = tiny(family)
    with torch.no_grad():
        bare = embed(backbone)
        method = build_method({**SMALL_HARMA, "shared_towers": shared_towers}, backbone)
        method.attach(backbone)
        adapted = embed(backbone)
    for before, after in zip(bare, adapted, strict=True):
        assert (before - after).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHOD_CONFIGS, ids=lambda config: config["type"])
def test_gradients_reach_exactly_what_the_method_trains(family: str, method: dict) -> None:
    backbone = tiny(family)
    original = {name: p for name, p in backbone.named_parameters()}
    embedding = {name for name, _ in backbone.embedding_parameters()}
    attached = build_method(method, backbone)
    attached.attach(backbone)
    if not any(p.requires_grad for p in [*attached.parameters(), *backbone.parameters()]):
        return  # a method that trains nothing (frozen): no gradient to follow
    with torch.no_grad():  # make zero-initialised output layers non-zero so every trained tensor gets a gradient
        for parameter in [*attached.parameters(), *(p for p in backbone.parameters() if p.requires_grad)]:
            parameter.add_(0.05 * torch.randn_like(parameter))
    image, text = embed(backbone)
    (image @ text.T).sum().backward()
    received = {name for name, p in original.items() if p.grad is not None and p.grad.abs().sum() > 0}
    if method["type"] == "full":
        assert received == embedding
    else:
        assert received == set()
        trained = [p for p in [*attached.parameters(), *backbone.parameters()] if p.requires_grad]
        assert trained and all(p.grad is not None for p in trained)


NEW_FAMILY = """
from harma_zoo.backbones.hf_clip import HFCLIPBackbone
from harma_zoo.registry import BACKBONES


@BACKBONES.register_module("new_family")
class NewFamily(HFCLIPBackbone):
    family = "new_family"
"""
NEW_METHOD = """
from harma_zoo.methods.frozen import Frozen
from harma_zoo.registry import METHODS


@METHODS.register_module("new_method")
class NewMethod(Frozen):
    pass
"""
USE_THEM = """
import json, harma_zoo
from harma_zoo.model import build_model
from harma_zoo.registry import BACKBONES, METHODS, get_class, registered_names
backbone = {"type": "new_family", **get_class(BACKBONES, "new_family").tiny_options()}
method = type(build_model(backbone, {"type": "new_method"}).method).__name__
print(json.dumps([harma_zoo.__file__, registered_names(BACKBONES), registered_names(METHODS), method]))
"""


def test_a_new_family_or_method_is_one_new_file(tmp_path) -> None:
    """Dropped into the package, a module registers itself: no import list to edit anywhere else."""
    package = Path(__file__).resolve().parents[1] / "harma_zoo"
    copy = tmp_path / "harma_zoo"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "backbones" / "new_family.py").write_text(NEW_FAMILY)
    (copy / "methods" / "new_method.py").write_text(NEW_METHOD)
    result = subprocess.run(
        [sys.executable, "-c", USE_THEM], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    where, families, methods, method = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(where).parent == copy
    assert "new_family" in families and set(FAMILIES) <= set(families)
    assert "new_method" in methods and method == "NewMethod"
