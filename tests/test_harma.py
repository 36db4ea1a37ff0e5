"""HarMA's modules, counts and attachment (docs/methods.md, "HarMA, as implemented")."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from harma_zoo.methods.harma import GatedAdapter, SelfAttention, SharedModule, sizes_for_width
from harma_zoo.model import build_backbone, build_method

TINY = {"type": "open_clip", "arch": "harma-tiny-vit"}
SMALL = {"bottleneck": 16, "shared_width": 8, "heads": 2}
CAPTIONS = ["two bridges over a river", "a dense residential area", "a baseball field"]


def _encode(backbone) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    pixels = torch.randn(3, 3, backbone.image_size, backbone.image_size)
    return backbone.encode_image(pixels), backbone.encode_text(backbone.tokenize(CAPTIONS))


def _perturb(method) -> None:
    """Make every zero-initialised layer non-zero, so the adapters change the outputs."""
    with torch.no_grad():
        for parameter in method.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))


@pytest.fixture(scope="module")
def vit_b32():
    return build_backbone({"type": "open_clip", "arch": "ViT-B-32"})


@pytest.mark.parametrize("shared_towers", [("text",), ("image", "text")])
def test_vit_b32_trainable_count_matches_the_reference(vit_b32, shared_towers) -> None:
    method = build_method({"type": "harma", "shared_towers": shared_towers}, vit_b32)
    temperature = 1
    assert sum(p.numel() for p in method.parameters()) + temperature == 5_934_397
    per_block = {
        "image": sum(p.numel() for p in method.adapters["image"]["0"].parameters()),
        "text": sum(p.numel() for p in method.adapters["text"]["0"].parameters()),
        "shared": sum(p.numel() for p in method.shared["0"].parameters()),
    }
    # docs/methods.md: 263,553 / 197,761 / 33,217 including the adapter's gate, plus one block gate per adapter
    assert per_block == {"image": 263_553 + 1, "text": 197_761 + 1, "shared": 33_217}
    assert len(method.adapters["image"]) == len(method.adapters["text"]) == len(method.shared) == 12


@pytest.mark.parametrize(
    ("width", "sizes"),
    [
        (768, (128, 64, 8)),
        (1024, (128, 64, 8)),
        (512, (128, 64, 8)),
        (128, (32, 16, 2)),
        (64, (16, 8, 1)),
        (200, (50, 25, 1)),
    ],
)
def test_unset_sizes_scale_with_the_tower_width(width: int, sizes: tuple[int, int, int]) -> None:
    assert sizes_for_width(width) == sizes
    r, s, heads = sizes
    assert r <= width and r % heads == 0 and s % heads == 0


def test_the_tiny_vit_gets_scaled_sizes_and_given_sizes_are_kept() -> None:
    backbone = build_backbone(TINY)  # towers 64 wide
    scaled = build_method({"type": "harma"}, backbone)
    assert (scaled.options.bottleneck, scaled.options.shared_width, scaled.options.heads) == (16, 8, 1)
    assert scaled.adapters["image"]["0"].down.out_features == 16 and scaled.shared["0"].l1.out_features == 8
    given = build_method({"type": "harma", "bottleneck": 32}, backbone)  # heads follow what divides r and s
    assert (given.options.bottleneck, given.options.shared_width, given.options.heads) == (32, 8, 1)
    with pytest.warns(UserWarning, match="bottleneck 128 is wider than the 64-wide tower"):
        build_method({"type": "harma", "bottleneck": 128, "shared_width": 64, "heads": 8}, backbone)


@pytest.mark.parametrize("shared_towers", [("text",), ("image", "text")])
def test_untrained_harma_computes_what_the_backbone_computes(shared_towers) -> None:
    backbone = build_backbone(TINY)
    with torch.no_grad():
        before = _encode(backbone)
        method = build_method({"type": "harma", "shared_towers": shared_towers, **SMALL}, backbone)
        method.attach(backbone)
        after = _encode(backbone)
    for x, y in zip(before, after, strict=True):
        assert (x - y).abs().max() <= 1e-5


def _count_calls(modules) -> Counter:
    calls: Counter = Counter()
    for name, module in modules:
        module.register_forward_hook(lambda *_, name=name: calls.update([name]))
    return calls


@pytest.mark.parametrize(("shared_towers", "calls_per_pass"), [(("text",), 1), (("image", "text"), 2)])
def test_each_shared_module_runs_in_the_towers_asked_for(shared_towers, calls_per_pass) -> None:
    backbone = build_backbone(TINY)
    method = build_method({"type": "harma", "shared_towers": shared_towers, **SMALL}, backbone)
    method.attach(backbone)
    calls = _count_calls(method.shared.items())
    _encode(backbone)
    assert calls == {"0": calls_per_pass, "1": calls_per_pass}


def test_the_adapter_attention_is_applied_twice_with_the_same_weights() -> None:
    backbone = build_backbone(TINY)
    method = build_method({"type": "harma", **SMALL}, backbone)
    method.attach(backbone)
    calls = _count_calls((f"{t}{b}", a.attn) for t, blocks in method.adapters.items() for b, a in blocks.items())
    _encode(backbone)
    assert calls == {name: 2 for name in ("image0", "image1", "text0", "text1")}


def test_the_adapter_follows_the_documented_formula() -> None:
    """docs/methods.md's formulas written out with the module's own weights, on a non-zero adapter."""
    torch.manual_seed(0)
    adapter, shared = GatedAdapter(12, 8, 2, 0.6), SharedModule(8, 4, 2, 0.6)
    _perturb(adapter)
    _perturb(shared)
    h = torch.randn(2, 5, 12)

    def mha(module, x):
        return torch.nn.functional.multi_head_attention_forward(
            x.transpose(0, 1),
            x.transpose(0, 1),
            x.transpose(0, 1),
            module.embed_dim,
            module.num_heads,
            module.in_proj_weight,
            module.in_proj_bias,
            None,
            None,
            False,
            0.0,
            module.out_proj.weight,
            module.out_proj.bias,
            need_weights=False,
        )[0].transpose(0, 1)

    u = mha(adapter.attn.attn, torch.nn.functional.gelu(adapter.down(h)))
    u1 = shared.l1(u)
    c = torch.sigmoid(shared.gate)
    z1 = u + shared.l2(c * mha(shared.attn.attn, u1) + (1 - c) * u1)
    z2 = mha(adapter.attn.attn, z1)
    z0 = torch.nn.functional.gelu(adapter.down(h))
    b = torch.sigmoid(adapter.gate)
    a = torch.sigmoid(adapter.block_gate)
    expected = a * (h + adapter.up(b * z0 + (1 - b) * z2)) + (1 - a) * h
    torch.testing.assert_close(adapter(h, shared), expected)


@pytest.mark.parametrize("tokens", [50, 77])
def test_the_adapter_attention_computes_what_its_multihead_attention_module_computes(tokens: int) -> None:
    """The direct forward (one projection, SDPA, output projection) against nn.MultiheadAttention's own:
    values and every gradient, to float rounding."""
    torch.manual_seed(0)
    attention = SelfAttention(32, 8).train()
    x = torch.randn(4, tokens, 32, requires_grad=True)
    direct = attention(x)
    direct.square().sum().backward()
    grads = [x.grad.clone(), *(p.grad.clone() for p in attention.parameters())]
    x.grad = None
    attention.zero_grad()
    reference = attention.attn(x, x, x, need_weights=False)[0]
    reference.square().sum().backward()
    torch.testing.assert_close(direct, reference, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads, [x.grad, *(p.grad for p in attention.parameters())], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_gates_start_at_the_specified_value_and_up_layers_at_zero() -> None:
    backbone = build_backbone(TINY)
    method = build_method({"type": "harma", **SMALL, "shared_towers": ("image", "text")}, backbone)
    gates = [p for name, p in method.named_parameters() if name.endswith("gate")]
    assert len(gates) == 2 * 2 * 2 + 2  # block + adapter gates in 2 towers x 2 blocks, one per shared module
    assert all(float(g.detach()) == pytest.approx(0.6) for g in gates)
    for adapter in [*method.adapters["image"].values(), *method.adapters["text"].values()]:
        assert not adapter.up.weight.any() and not adapter.up.bias.any()
    assert all(not s.l2.weight.any() and not s.l2.bias.any() for s in method.shared.values())


def test_blocks_option_selects_blocks_from_either_end() -> None:
    backbone = build_backbone({"type": "open_clip", "arch": "harma-tiny-sigmoid"})  # image 6 blocks, text 2
    method = build_method({"type": "harma", **SMALL, "blocks": (-1,)}, backbone)
    assert sorted(method.adapters["image"]) == ["5"] and sorted(method.adapters["text"]) == ["1"]
    assert sorted(method.shared) == ["1"]
    with pytest.raises(ValueError, match="block 4 does not exist in the text tower"):
        build_method({"type": "harma", **SMALL, "blocks": (4,)}, backbone)


def test_unknown_options_are_named() -> None:
    backbone = build_backbone(TINY)
    with pytest.raises(TypeError, match="unknown option.*rank.*known:.*bottleneck"):
        build_method({"type": "harma", "rank": 4}, backbone)
    with pytest.raises(ValueError, match="shared_towers"):
        build_method({"type": "harma", "shared_towers": ("audio",)}, backbone)


def test_only_harma_parameters_receive_gradients_and_detach_restores_the_backbone() -> None:
    backbone = build_backbone(TINY)
    with torch.no_grad():
        reference = _encode(backbone)
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    method = build_method({"type": "harma", **SMALL, "shared_towers": ("image", "text")}, backbone)
    method.attach(backbone)
    _perturb(method)
    image, text = _encode(backbone)
    assert (image - reference[0]).abs().max() > 1e-3  # the adapters are in the forward path
    (image @ text.T).sum().backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())

    method.detach()
    assert all(p.requires_grad for p in backbone.parameters())
    assert backbone.state_dict().keys() == state.keys()
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        for x, y in zip(reference, _encode(backbone), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
