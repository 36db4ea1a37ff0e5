"""The OpenCLIP family: tiny builds, and every real weight-loading path on files made here."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from harma_zoo.model import build_backbone

TINY = "harma-tiny-vit"
CAPTIONS = ["many planes are parked near a terminal", "a green park with a pond"]


def _embeddings(backbone) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, backbone.image_size, backbone.image_size)
    with torch.no_grad():
        return backbone.encode_image(pixels), backbone.encode_text(backbone.tokenize(CAPTIONS))


def _assert_same_embeddings(a, b) -> None:
    for x, y in zip(_embeddings(a), _embeddings(b), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.fixture
def tiny():
    return build_backbone({"type": "open_clip", "arch": TINY})


def test_tiny_build_exposes_the_interface(tiny) -> None:
    image, text = _embeddings(tiny)
    assert image.shape == text.shape == (2, 64)
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(2))
    assert tiny.image_size == 64 and len(tiny.mean) == len(tiny.std) == 3
    assert tiny.tokenize(CAPTIONS)["input_ids"].shape == (2, 77)
    points = tiny.insertion_points()
    assert [(p.tower, p.block, p.branch) for p in points] == [
        (tower, block, branch) for tower in ("image", "text") for block in (0, 1) for branch in ("attn", "mlp")
    ]
    assert all(p.width == 64 for p in points)
    assert {tiny.tower_of(name) for name, _ in tiny.named_parameters()} == {"image", "text", "other"}
    assert [name for name, _ in tiny.named_parameters() if tiny.tower_of(name) == "other"] == ["model.logit_scale"]


def test_transforms_use_the_family_size_and_normalisation(tiny) -> None:
    from PIL import Image

    image = Image.new("RGB", (224, 200), color=(255, 0, 0))
    evaluated = tiny.eval_transform()(image)
    assert evaluated.shape == (3, 64, 64)
    red = (1.0 - tiny.mean[0]) / tiny.std[0]
    torch.testing.assert_close(evaluated[0], torch.full((64, 64), red), atol=1e-4, rtol=0)
    assert tiny.train_transform()(image).shape == (3, 64, 64)


def test_sigmoid_arch_with_a_timm_image_tower_builds() -> None:
    backbone = build_backbone({"type": "open_clip", "arch": "harma-tiny-sigmoid"})
    image, text = _embeddings(backbone)
    assert image.shape == text.shape == (2, 64)
    assert len([p for p in backbone.insertion_points() if p.tower == "image"]) == 12  # timm test_vit: 6 blocks
    assert {name for name, _ in backbone.named_parameters() if backbone.tower_of(name) == "other"} == {
        "model.logit_scale",
        "model.logit_bias",
    }


@pytest.mark.parametrize("layout", ["plain", "wrapped"])
def test_local_checkpoint_file_loads_onto_the_architecture(tiny, tmp_path: Path, layout: str) -> None:
    """GeoRSCLIP/RemoteCLIP files are plain state dicts; training checkpoints wrap them."""
    state = tiny.model.state_dict()
    if layout == "wrapped":
        state = {"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 3}
    path = tmp_path / "RS5M_tiny.pt"
    torch.save(state, path)
    loaded = build_backbone({"type": "open_clip", "arch": TINY, "pretrained": str(path)})
    _assert_same_embeddings(tiny, loaded)


class Payload:
    """Stands for any class a malicious or careless checkpoint could carry."""


def test_a_checkpoint_that_needs_unpickling_is_refused(tiny, tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": tiny.model.state_dict(), "payload": Payload}, handle)
    with pytest.raises(ValueError, match=r"evil\.pt.*refusing to unpickle"):
        build_backbone({"type": "open_clip", "arch": TINY, "pretrained": str(path)})


def test_a_checkpoint_of_another_architecture_names_the_file(tmp_path: Path) -> None:
    other = build_backbone({"type": "open_clip", "arch": "harma-tiny-sigmoid"})
    path = tmp_path / "sigmoid.pt"
    torch.save(other.model.state_dict(), path)
    with pytest.raises(ValueError, match=r"sigmoid\.pt.*harma-tiny-vit"):
        build_backbone({"type": "open_clip", "arch": TINY, "pretrained": str(path)})


def test_missing_file_unknown_arch_and_unknown_tag_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        build_backbone({"type": "open_clip", "arch": TINY, "pretrained": str(tmp_path / "nowhere.pt")})
    with pytest.raises(KeyError, match="ViT-B-32"):
        build_backbone({"type": "open_clip", "arch": "ViT-B-99"})
    with pytest.raises(KeyError, match="laion2b_s34b_b79k"):
        build_backbone({"type": "open_clip", "arch": "ViT-B-32", "pretrained": "laion9b"})


def test_hf_hub_model_id_loads_from_the_hub_cache(tiny, tmp_path: Path) -> None:
    """The ``hf-hub:`` path, run offline against a hub cache laid out as huggingface_hub does."""
    repo = tmp_path / "models--rs-lab--tiny-rs-clip"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    config = {"model_cfg": open_clip.get_model_config(TINY), "preprocess_cfg": {}}
    (snapshot / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, snapshot / "open_clip_model.safetensors")
    loaded = build_backbone({"type": "open_clip", "arch": "hf-hub:rs-lab/tiny-rs-clip", "cache_dir": str(tmp_path)})
    _assert_same_embeddings(tiny, loaded)


@pytest.mark.needs_weights
@pytest.mark.parametrize(("arch", "pretrained"), [("ViT-B-32", "laion2b_s34b_b79k"), ("ViT-B-32-quickgelu", "openai")])
def test_pretrained_tags_load(arch: str, pretrained: str) -> None:
    backbone = build_backbone({"type": "open_clip", "arch": arch, "pretrained": pretrained})
    image, text = _embeddings(backbone)
    assert image.shape == text.shape == (2, 512)


def _harma_step_gradients(model, pixels, tokens) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(pixels, tokens, torch.arange(len(pixels)))["loss"].backward()
    return {name: p.grad.clone() for name, p in model.trainable_parameters()}


def test_attention_inputs_reach_the_projection_stored_sequence_first_with_the_same_results() -> None:
    from harma_zoo.model import build_model

    torch.manual_seed(0)
    model = build_model({"type": "open_clip", "arch": "harma-tiny-vit"}, {"type": "harma", "bottleneck": 16,
                        "shared_width": 8, "heads": 2, "gate_init": 0.0})  # fmt: skip
    with torch.no_grad():  # non-zero up-projections, so that gradients flow through every block
        for name, p in model.method.named_parameters():
            if ".up." in name or ".l2." in name:
                p.normal_(0, 0.05)
    seen: list[bool] = []  # per hooked call: is the module's own transpose of its input contiguous?
    attentions = [m for m in model.backbone.modules() if isinstance(m, torch.nn.MultiheadAttention) and m.batch_first]
    assert len(model.backbone.attention_layout_hooks) == len(attentions) == 4  # 2 blocks in each tower
    for module in attentions:
        module.register_forward_pre_hook(lambda _, args: seen.append(args[0].transpose(0, 1).is_contiguous()))
    pixels = torch.randn(4, 3, 64, 64)
    tokens = model.backbone.tokenize(["a red roof", "two ponds", "green fields", "a white ship"])
    with_layout = _harma_step_gradients(model, pixels, tokens)
    # image blocks 0, 1, then text blocks 0, 1: a block's input needs a gradient after the first adapter
    assert seen == [False, True, False, True]
    for handle in model.backbone.attention_layout_hooks:
        handle.remove()
    seen.clear()
    as_given = _harma_step_gradients(model, pixels, tokens)
    assert seen == [False, False, False, False]  # without it: a transposed, non-contiguous input
    for name, grad in with_layout.items():
        torch.testing.assert_close(grad, as_given[name], rtol=1e-4, atol=1e-6, msg=name)
