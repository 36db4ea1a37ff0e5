"""Every registered method on both tiny OpenCLIP backbones, and what is particular to the baselines."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harma_zoo.model import build_backbone, build_method
from harma_zoo.registry import METHODS as METHOD_REGISTRY
from harma_zoo.registry import registered_names

ARCHS = ["harma-tiny-vit", "harma-tiny-sigmoid"]  # OpenCLIP blocks (nn.MultiheadAttention) / timm image tower
SMALL = {
    "harma": {"type": "harma", "bottleneck": 8, "shared_width": 8, "heads": 2},
    "lora": {"type": "lora", "rank": 4},
    "adapter": {"type": "adapter", "bottleneck": 8},
}
METHODS = {name: SMALL.get(name, {"type": name}) for name in registered_names(METHOD_REGISTRY)}
CAPTIONS = ["two bridges over a river", "a dense residential area", "a baseball field"]


def _backbone(arch: str):
    return build_backbone({"type": "open_clip", "arch": arch})


def _encode(backbone, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    pixels = torch.randn(3, 3, size, size, generator=generator)
    return backbone.encode_image(pixels), backbone.encode_text(backbone.tokenize(CAPTIONS))


def _method_parameters(method, backbone) -> list[tuple[str, nn.Parameter]]:
    """What the method trains: its own parameters and those it injected into the backbone."""
    injected = [(n, p) for n, p in backbone.named_parameters() if method.backbone_parameter_kind(n) != "backbone"]
    return [*method.named_parameters(), *injected]


def _perturb(method, backbone) -> None:
    """Make the zero-initialised parts (LoRA B, adapter up layers) non-zero."""
    with torch.no_grad():
        for _, parameter in _method_parameters(method, backbone):
            parameter.add_(0.1 * torch.randn_like(parameter))


def _attached(name: str, backbone, **options):
    method = build_method({**METHODS[name], **options}, backbone)
    method.attach(backbone)
    return method, backbone


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", list(METHODS))
def test_an_untrained_method_leaves_the_embeddings_unchanged(name, arch) -> None:
    backbone = _backbone(arch).eval()
    with torch.no_grad():
        before = _encode(backbone)
        method = build_method(METHODS[name], backbone)
        method.attach(backbone)
        after = _encode(backbone)
    for x, y in zip(before, after, strict=True):
        assert (x - y).abs().max() <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ["lora", "adapter"])
def test_only_the_method_parameters_receive_gradients(name, arch) -> None:
    method, backbone = _attached(name, _backbone(arch))
    trained = _method_parameters(method, backbone)
    assert trained
    # the trainer finds what to train by requires_grad: exactly the method's parameters
    injected = {n for n, _ in backbone.named_parameters() if method.backbone_parameter_kind(n) != "backbone"}
    assert {n for n, p in backbone.named_parameters() if p.requires_grad} == injected
    assert all(p.requires_grad for _, p in trained)
    _perturb(method, backbone)
    image, text = _encode(backbone)
    (image @ text.T).sum().backward()
    original = [(n, p) for n, p in backbone.named_parameters() if method.backbone_parameter_kind(n) == "backbone"]
    assert [n for n, p in original if p.grad is not None] == []
    assert [n for n, p in trained if p.grad is None or not p.grad.abs().sum() > 0] == []


@pytest.mark.parametrize("arch", ARCHS)
def test_full_fine_tuning_trains_every_embedding_parameter(arch) -> None:
    method, backbone = _attached("full", _backbone(arch))
    embedding = dict(backbone.embedding_parameters())
    assert list(method.parameters()) == []
    assert {n for n, p in backbone.named_parameters() if p.requires_grad} == set(embedding)
    image, text = _encode(backbone)
    (image @ text.T).sum().backward()
    assert [n for n, p in embedding.items() if p.grad is None] == []
    assert method.trains_temperature


@pytest.mark.parametrize("arch", ARCHS)
def test_frozen_trains_nothing(arch) -> None:
    method, backbone = _attached("frozen", _backbone(arch))
    assert list(method.parameters()) == []
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not method.trains_temperature


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", list(METHODS))
def test_detach_restores_the_backbone_exactly(name, arch) -> None:
    backbone = _backbone(arch)
    next(backbone.parameters()).requires_grad_(False)  # flags are restored as they were, not set to True
    flags = {n: p.requires_grad for n, p in backbone.named_parameters()}
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    types = {n: type(m) for n, m in backbone.named_modules()}
    with torch.no_grad():
        reference = _encode(backbone)

    method = build_method(METHODS[name], backbone)
    method.attach(backbone)
    _perturb(method, backbone)
    image, text = _encode(backbone)
    if name != "frozen":
        (image @ text.T).sum().backward()
    if name == "full":  # full fine-tuning changes the weights themselves: undo by hand what a step would do
        backbone.load_state_dict(state)
    method.detach()

    assert not method.attached
    assert {n: p.requires_grad for n, p in backbone.named_parameters()} == flags
    assert {n: type(m) for n, m in backbone.named_modules()} == types
    restored = backbone.state_dict()
    assert list(restored) == list(state)
    assert all(torch.equal(restored[k], v) for k, v in state.items())
    assert not hasattr(backbone, "peft_config")
    with torch.no_grad():
        for x, y in zip(reference, _encode(backbone), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


# --- LoRA -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "targets", "towers"),
    [
        ("harma-tiny-vit", ("attn",), ("image", "text")),  # nn.MultiheadAttention in both towers
        ("harma-tiny-vit", ("c_fc", "c_proj"), ("image", "text")),
        ("harma-tiny-sigmoid", ("qkv",), ("image",)),  # timm blocks
        ("harma-tiny-sigmoid", ("fc1", "fc2"), ("image",)),
        ("harma-tiny-sigmoid", ("attn",), ("text",)),
    ],
)
def test_lora_is_in_the_forward_path(arch, targets, towers) -> None:
    """Non-zero B matrices change the embeddings of exactly the adapted towers (guards the MHA out_proj trap)."""
    backbone = _backbone(arch).eval()
    with torch.no_grad():
        before = dict(zip(("image", "text"), _encode(backbone), strict=True))
    method, backbone = _attached("lora", backbone, targets=targets, towers=towers)
    _perturb(method, backbone)
    with torch.no_grad():
        after = dict(zip(("image", "text"), _encode(backbone), strict=True))
    for tower in ("image", "text"):
        change = (after[tower] - before[tower]).abs().max()
        assert change > 1e-3 if tower in towers else change == 0, tower


def test_lora_on_multihead_attention_adds_exactly_the_low_rank_update() -> None:
    """y = MHA with in_proj_weight + (alpha / rank) B A, the output projection untouched."""
    backbone = _backbone("harma-tiny-vit")
    original = copy.deepcopy(backbone.model.transformer.resblocks[0].attn)
    method, backbone = _attached("lora", backbone, targets=("attn",), alpha=8.0)
    _perturb(method, backbone)
    wrapped = backbone.model.transformer.resblocks[0].attn
    a, b = wrapped.lora_A["default"].weight, wrapped.lora_B["default"].weight
    x = torch.randn(2, 5, 64)
    mask = torch.triu(torch.full((5, 5), float("-inf")), 1)
    with torch.no_grad():
        original.in_proj_weight += (8.0 / 4) * b @ a
        expected = original(x, x, x, need_weights=False, attn_mask=mask)[0]
        got = wrapped(x, x, x, need_weights=False, attn_mask=mask)[0]
    torch.testing.assert_close(got, expected)


def test_lora_default_targets_and_report_kinds() -> None:
    backbone = _backbone("harma-tiny-sigmoid")
    method = build_method({"type": "lora"}, backbone)
    assert method.parameter_targets == [f"model.text.transformer.resblocks.{i}.attn.in_proj_weight" for i in (0, 1)]
    leaves = {name.rpartition(".")[2] for name in method.module_targets}
    assert leaves == {"qkv", "fc1", "fc2", "c_fc", "c_proj"}
    assert not any("attn_pool" in name for name in method.module_targets)  # blocks only
    method.attach(backbone)
    kinds = {method.backbone_parameter_kind(n) for n, p in backbone.named_parameters() if p.requires_grad}
    assert kinds == {"lora"}
    assert all(backbone.tower_of(n) in ("image", "text") for n, p in backbone.named_parameters() if p.requires_grad)
    assert not backbone.model.logit_scale.requires_grad


def test_lora_refuses_targets_it_cannot_adapt() -> None:
    backbone = _backbone("harma-tiny-vit")
    with pytest.raises(ValueError, match="out_proj of an nn.MultiheadAttention"):
        build_method({"type": "lora", "targets": ("out_proj",)}, backbone)
    with pytest.raises(ValueError, match="no module .* matches"):
        build_method({"type": "lora", "targets": ("qkv",)}, backbone)
    with pytest.raises(ValueError, match="is a Sequential"):
        build_method({"type": "lora", "targets": ("mlp",)}, backbone)
    with pytest.raises(ValueError, match="towers"):
        build_method({"type": "lora", "towers": ("audio",)}, backbone)


def test_lora_dropout_applies_to_the_linear_targets() -> None:
    method, backbone = _attached("lora", _backbone("harma-tiny-vit"), dropout=0.5)
    dropouts = {
        n.rpartition(".lora_dropout")[0]: m for n, m in backbone.named_modules() if n.endswith("dropout.default")
    }
    assert {n for n, m in dropouts.items() if isinstance(m, nn.Dropout) and m.p == 0.5} == set(method.module_targets)
    fused = {n for n, m in dropouts.items() if isinstance(m, nn.Identity)}  # peft: no dropout on a weight delta
    assert {f"{n}.in_proj_weight" for n in fused} == set(method.parameter_targets)
    method.detach()


# --- adapter ----------------------------------------------------------------------------


def test_adapter_blocks_towers_and_parameter_groups() -> None:
    backbone = _backbone("harma-tiny-sigmoid")  # image 6 blocks, text 2
    method = build_method({"type": "adapter", "bottleneck": 8, "blocks": (-1,), "towers": ("image",)}, backbone)
    assert sorted(method.adapters) == ["image"] and sorted(method.adapters["image"]) == ["5"]
    assert {method.parameter_group(n) for n, _ in method.named_parameters()} == {("image", "adapter")}
    assert method.adapters["image"]["5"].down.out_features == 8


# --- LoRA on the Hugging Face families ----------------------------------------------------


def _tiny_hf(family: str):
    def tower(width: int, layers: int, **extra) -> dict:
        return dict(
            hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers, num_attention_heads=2, **extra
        )

    vision, text = tower(32, 2, image_size=32, patch_size=8), tower(24, 2)
    config = {
        "hf_clip": dict(vision_config=vision, text_config=text, projection_dim=16),
        "hf_siglip": dict(vision_config=vision, text_config=dict(text, projection_size=32)),
        "hf_blip": dict(vision_config=vision, text_config=text, image_text_hidden_size=16),
    }[family]
    return build_backbone({"type": family, "config": config})


@pytest.mark.parametrize(
    ("family", "layers"),
    [
        ("hf_clip", {"q_proj", "k_proj", "v_proj", "fc1", "fc2"}),
        ("hf_siglip", {"q_proj", "k_proj", "v_proj", "fc1", "fc2"}),
        # BLIP: fused qkv in the image tower, BERT-style text layers; never the unused cross-attention
        (
            "hf_blip",
            {"qkv", "fc1", "fc2", "self.query", "self.key", "self.value", "intermediate.dense", "output.dense"},
        ),
    ],
)
def test_lora_default_targets_on_the_hf_families(family, layers) -> None:
    backbone = _tiny_hf(family)
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    method = build_method({"type": "lora", "rank": 2}, backbone)
    assert method.parameter_targets == []
    assert {n for n in method.module_targets if not n.endswith(tuple(layers))} == set()
    assert {layer for layer in layers if not any(n.endswith("." + layer) for n in method.module_targets)} == set()
    assert not any("crossattention" in n or n.endswith("attention.output.dense") for n in method.module_targets)
    method.attach(backbone)
    _perturb(method, backbone)
    image, text = _encode(backbone, size=32)
    (image @ text.T).sum().backward()
    trained = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    assert {method.backbone_parameter_kind(n) for n, _ in trained} == {"lora"}
    assert [n for n, p in trained if p.grad is None or not p.grad.abs().sum() > 0] == []
    method.detach()
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in state.items())
