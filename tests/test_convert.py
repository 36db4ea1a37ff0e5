"""Converting checkpoints of the HarMA reference code (layout: docs/zoo.md, "Checkpoints of the HarMA code").

The reference checkpoint here is built from the documented key names alone (random
ViT-B/32 backbone, random non-zero trained tensors). Its conversion is checked against
the same tensors placed into harma-zoo by our names, and against an independent forward
pass written with the original key names and sequence-first tensors, which would catch
a wrong mapping that a round trip through our own names hides.
"""

from __future__ import annotations

import enum
import logging
import math
import os
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from harma_zoo.engine.checkpoint import load_adapter, read_metadata
from harma_zoo.model import build_model
from harma_zoo.zoo.convert import UnpickledObject, convert_original, load_reference_checkpoint, load_reference_tensors

BLOCKS = 12
IMAGE = "model.visual.transformer.resblocks."
TEXT = "model.transformer.resblocks."
SHARED = "mmadapter.BiShareAdapterxx."
ATTENTION = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
CAPTIONS = ["two white storage tanks beside a road"]
HARMA = {"type": "harma", "bottleneck": 128, "shared_width": 64, "heads": 8, "shared_towers": ["text"]}
RAN: list[str] = []  # code of the config classes below that ran while loading


class Color(enum.Enum):
    RED = "red"


class ReferenceConfig:
    """Stands for the authors' YAML config object: a class the weights-only loader refuses."""

    def __init__(self) -> None:
        self.lr = 4e-4
        self.datasets = ["rsitmd", "rsicd"]
        self.color = Color.RED
        self.by_color = {Color.RED: 1}

    def __setstate__(self, state: dict) -> None:
        RAN.append("ReferenceConfig.__setstate__")
        self.__dict__.update(state)


class SlottedMapping(dict):
    """Like ruamel.yaml's CommentedMap: a dict subclass with slots, pickled with items and slot state."""

    __slots__ = ("_ok", "_ref")

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._ok, self._ref = {1, 2}, []

    def __setitem__(self, key, value) -> None:
        RAN.append("SlottedMapping.__setitem__")
        super().__setitem__(key, value)


class ListConfig(list):
    def extend(self, items) -> None:
        RAN.append("ListConfig.extend")
        super().extend(items)


class Exploit:
    """Pickles as a call of ``function(*args)``."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


# --- the reference checkpoint, from the documented names ------------------------------------------
def _attention_shapes(name: str, width: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{name}.in_proj_weight": (3 * width, width),
        f"{name}.in_proj_bias": (3 * width,),
        f"{name}.out_proj.weight": (width, width),
        f"{name}.out_proj.bias": (width,),
    }


def _trained_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"temp": ()}
    for n in range(BLOCKS):
        for prefix, width in ((IMAGE, 768), (TEXT, 512)):
            block = f"{prefix}{n}."
            shapes[block + "gate1"] = ()
            # the image adapters' gates are stored as [1] here, the text ones as []: both occur
            shapes[block + "mmadapter.gate1"] = (1,) if prefix == IMAGE else ()
            shapes[block + "mmadapter.img_proj_down.weight"] = (128, width)
            shapes[block + "mmadapter.img_proj_down.bias"] = (128,)
            shapes.update(_attention_shapes(block + "mmadapter.multihead_attention", 128))
            shapes[block + "mmadapter.img_proj_up.weight"] = (width, 128)
            shapes[block + "mmadapter.img_proj_up.bias"] = (width,)
        shared = f"{TEXT}{n}.{SHARED}"
        shapes[shared + "gate1"] = ()
        shapes[shared + "l1.weight"] = (64, 128)
        shapes[shared + "l1.bias"] = (64,)
        shapes.update(_attention_shapes(shared + "multihead_attention1", 64))
        shapes[shared + "l2.weight"] = (128, 64)
        shapes[shared + "l2.bias"] = (128,)
    return shapes


def _random(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if name == "temp":
        return torch.tensor(0.05)
    if name.endswith("gate1"):
        return 0.6 + 0.8 * torch.randn(shape)
    if len(shape) == 2:
        return torch.randn(shape) / math.sqrt(shape[1])
    return 0.05 * torch.randn(shape)


def _our_names() -> dict[str, str]:
    """Reference name -> harma-zoo name, written out here independently of the converter."""
    names = {"temp": "loss.contrastive.temperature"}
    for n in range(BLOCKS):
        for prefix, tower in ((IMAGE, "image"), (TEXT, "text")):
            block, ours = f"{prefix}{n}.", f"method.adapters.{tower}.{n}."
            names[block + "gate1"] = ours + "block_gate"
            names[block + "mmadapter.gate1"] = ours + "gate"
            for kind in ("weight", "bias"):
                names[f"{block}mmadapter.img_proj_down.{kind}"] = f"{ours}down.{kind}"
                names[f"{block}mmadapter.img_proj_up.{kind}"] = f"{ours}up.{kind}"
            for name in ATTENTION:
                names[f"{block}mmadapter.multihead_attention.{name}"] = f"{ours}attn.attn.{name}"
        shared, ours = f"{TEXT}{n}.{SHARED}", f"method.shared.{n}."
        names[shared + "gate1"] = ours + "gate"
        for kind in ("weight", "bias"):
            names[f"{shared}l1.{kind}"] = f"{ours}l1.{kind}"
            names[f"{shared}l2.{kind}"] = f"{ours}l2.{kind}"
        for name in ATTENTION:
            names[f"{shared}multihead_attention1.{name}"] = f"{ours}attn.attn.{name}"
    return names


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    torch.manual_seed(1234)
    backbone = open_clip.create_model("ViT-B-32").state_dict()  # random weights
    trained = {name: _random(name, shape) for name, shape in _trained_shapes().items()}
    state = {f"model.{name}": tensor for name, tensor in backbone.items()} | trained
    assert len(state) == 651  # as the document says
    path = folder / "harma_rsitmd_best.pth"
    torch.save({"model": state, "config": ReferenceConfig()}, path)
    georsclip = folder / "RS5M_ViT-B-32_RET-2.pt"  # the same backbone weights, saved on their own
    torch.save(backbone, georsclip)
    return SimpleNamespace(
        folder=folder, path=path, state=state, backbone=backbone, trained=trained, georsclip=georsclip
    )


def _load_converted(path: Path, inputs, towers=("image", "text")):
    metadata = read_metadata(path)
    model = build_model(metadata["backbone"], metadata["method"], metadata["loss"])
    load_adapter(model, path, method=metadata["method"])  # checks the backbone fingerprint
    model.eval()
    embeddings = _embed(model, inputs, towers)
    return SimpleNamespace(path=path, metadata=metadata, model=model, embeddings=embeddings)


@pytest.fixture(scope="module")
def converted(reference, inputs):
    """LAION-style conversion (GELU), backbone weights written beside the adapter."""
    RAN.clear()
    backbone_file = reference.folder / "harma-backbone.safetensors"
    path = convert_original(
        reference.path, reference.folder / "harma-gelu.safetensors", quick_gelu=False, backbone_output=backbone_file
    )
    assert not RAN, RAN  # the config object was read, none of its code ran
    result = _load_converted(path, inputs)
    result.backbone_file = backbone_file
    return result


@pytest.fixture(scope="module")
def converted_quick(reference, inputs):
    """GeoRSCLIP-style conversion (QuickGELU) naming a separately saved ``.pt`` of the same weights."""
    path = convert_original(
        reference.path,
        reference.folder / "harma-quick.safetensors",
        quick_gelu=True,
        backbone_pretrained=str(reference.georsclip),
    )
    return _load_converted(path, inputs, towers=("image",))


@pytest.fixture(scope="module")
def inputs():
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    return pixels, {"input_ids": open_clip.get_tokenizer("ViT-B-32")(CAPTIONS)}


def _embed(model, inputs, towers=("image", "text")) -> tuple[torch.Tensor, ...]:
    pixels, tokens = inputs
    with torch.no_grad():
        return tuple(model.encode_image(pixels) if tower == "image" else model.encode_text(tokens) for tower in towers)


# --- an independent forward pass with the original names, sequence-first ------------------------------
def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)


def _linear(x, sd, name):
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def _attention(x, sd, name, heads, mask=None):
    width = x.shape[-1]
    return F.multi_head_attention_forward(
        x, x, x, width, heads, sd[f"{name}.in_proj_weight"], sd[f"{name}.in_proj_bias"], None, None, False, 0.0,
        sd[f"{name}.out_proj.weight"], sd[f"{name}.out_proj.bias"], training=False, need_weights=False,
        attn_mask=mask,
    )[0]  # fmt: skip


def _reference_block(x, sd, block, heads, act, mask, shared):
    """docs/methods.md's HarMA block on a (tokens, batch, width) tensor, tensors taken by their original names."""
    x = x + _attention(_ln(x, sd, block + "ln_1"), sd, block + "attn", heads, mask)
    h = _linear(act(_linear(_ln(x, sd, block + "ln_2"), sd, block + "mlp.c_fc")), sd, block + "mlp.c_proj")
    adapter = block + "mmadapter."
    z0 = F.gelu(_linear(h, sd, adapter + "img_proj_down"))
    z1 = _attention(z0, sd, adapter + "multihead_attention", 8)
    if shared:
        module = adapter + "BiShareAdapterxx."
        u1 = _linear(z1, sd, module + "l1")
        c = torch.sigmoid(sd[module + "gate1"])
        z1 = z1 + _linear(c * _attention(u1, sd, module + "multihead_attention1", 8) + (1 - c) * u1, sd, module + "l2")
    z2 = _attention(z1, sd, adapter + "multihead_attention", 8)
    b = torch.sigmoid(sd[adapter + "gate1"])
    adapted = h + _linear(b * z0 + (1 - b) * z2, sd, adapter + "img_proj_up")
    a = torch.sigmoid(sd[block + "gate1"])
    return x + a * adapted + (1 - a) * h


def _reference_image(sd, pixels, act):
    x = F.conv2d(pixels, sd["model.visual.conv1.weight"], stride=32).flatten(2).transpose(1, 2)
    cls = sd["model.visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["model.visual.positional_embedding"]
    x = _ln(x, sd, "model.visual.ln_pre").transpose(0, 1)
    for n in range(BLOCKS):
        x = _reference_block(x, sd, f"{IMAGE}{n}.", 12, act, None, shared=False)
    return F.normalize(_ln(x[0], sd, "model.visual.ln_post") @ sd["model.visual.proj"], dim=-1)


def _reference_text(sd, ids, act):
    x = (sd["model.token_embedding.weight"][ids] + sd["model.positional_embedding"]).transpose(0, 1)
    mask = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)  # the backbone's causal mask
    for n in range(BLOCKS):  # the adapters attend over all 77 positions, unmasked
        x = _reference_block(x, sd, f"{TEXT}{n}.", 8, act, mask, shared=True)
    x = _ln(x.transpose(0, 1), sd, "model.ln_final")
    return F.normalize(x[torch.arange(len(ids)), ids.argmax(dim=-1)] @ sd["model.text_projection"], dim=-1)


def _reference_embed(sd, inputs, act):
    pixels, tokens = inputs
    with torch.no_grad():
        return _reference_image(sd, pixels, act), _reference_text(sd, tokens["input_ids"], act)


def _max_difference(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


# --- tests -------------------------------------------------------------------------------------------
def test_converted_checkpoint_equals_the_same_weights_placed_directly(reference, converted, inputs) -> None:
    direct = build_model({"type": "open_clip", "arch": "ViT-B-32"}, HARMA, {"type": "harma"})
    direct.backbone.model.load_state_dict(reference.backbone)
    parameters = dict(direct.named_parameters())
    names = _our_names()
    assert set(names.values()) == {name for name, _ in direct.trainable_parameters()}
    with torch.no_grad():
        for original, ours in names.items():
            parameters[ours].copy_(reference.trained[original].reshape(parameters[ours].shape))
    direct.eval()
    assert _max_difference(converted.embeddings, _embed(direct, inputs)) <= 1e-5
    assert converted.model.loss.contrastive.temperature.item() == pytest.approx(0.05)

    bad = dict(reference.trained)
    bad[f"{TEXT}5.mmadapter.img_proj_down.weight"] = torch.zeros(64, 512)
    with pytest.raises(ValueError, match=rf"{TEXT}5\.mmadapter\.img_proj_down\.weight has shape \(64, 512\)"):
        load_reference_tensors(direct, bad, "bad.pth")
    del bad["temp"]
    with pytest.raises(ValueError, match="reference tensors missing: temp"):
        load_reference_tensors(direct, bad, "bad.pth")

    direct.method.detach()  # the adapters matter: the bare backbone computes something else
    with torch.no_grad():
        bare = direct.encode_image(inputs[0])
    assert (converted.embeddings[0] - bare).abs().max() > 1e-2


def test_converted_checkpoint_matches_an_independent_reference_forward(reference, converted, inputs) -> None:
    expected = _reference_embed(reference.state, inputs, F.gelu)
    assert _max_difference(converted.embeddings, expected) <= 1e-4


def test_quick_gelu_picks_the_quickgelu_architecture(reference, converted, converted_quick, inputs) -> None:
    assert converted.metadata["backbone"]["arch"] == "ViT-B-32"
    assert converted_quick.metadata["backbone"]["arch"] == "ViT-B-32-quickgelu"
    # the image tower suffices to tell the activations apart
    assert (converted_quick.embeddings[0] - converted.embeddings[0]).abs().max() > 1e-3
    with torch.no_grad():
        expected = _reference_image(reference.state, inputs[0], _quick_gelu)
    assert (converted_quick.embeddings[0] - expected).abs().max() <= 1e-4


def test_metadata_and_the_backbone_file(reference, converted) -> None:
    metadata = converted.metadata
    assert metadata["backbone"] == {"type": "open_clip", "arch": "ViT-B-32", "pretrained": str(converted.backbone_file)}
    assert metadata["method"] == HARMA
    assert metadata["loss"] == {"type": "harma"}
    assert metadata["recipe"] == "convert-original"
    assert metadata["extra"] == {"source": str(reference.path), "converted_from": "HarMA reference code"}
    # the model was built from the backbone file: its fingerprint is the one recorded
    assert converted.model.backbone_fingerprint == metadata["backbone_fingerprint"]
    saved = load_file(str(converted.backbone_file))
    assert saved.keys() == reference.backbone.keys()
    assert all(torch.equal(saved[name], tensor) for name, tensor in reference.backbone.items())


def test_a_separately_saved_pt_of_the_same_weights_has_the_same_fingerprint(reference, converted, converted_quick):
    # converted_quick's backbone was built from the .pt file, not from the converter's output
    assert converted_quick.metadata["backbone"]["pretrained"] == str(reference.georsclip)
    assert converted_quick.model.backbone_fingerprint == converted_quick.metadata["backbone_fingerprint"]
    assert converted_quick.metadata["backbone_fingerprint"] == converted.metadata["backbone_fingerprint"]


def test_missing_and_unexpected_keys_are_named(tmp_path, reference) -> None:
    state = {name: torch.zeros(1) for name in reference.state}  # names are checked before any shape
    del state["temp"], state[f"{TEXT}3.{SHARED}l2.bias"]
    state[f"{IMAGE}3.mmadapter.adapter_extra"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"model": state, "config": {"lr": 4e-4}}, path)
    output = tmp_path / "out.safetensors"
    with pytest.raises(ValueError) as error:
        convert_original(path, output, quick_gelu=False, backbone_pretrained="laion2b_s34b_b79k")
    message = str(error.value)
    assert str(path) in message
    assert f"2 missing [{TEXT}3.{SHARED}l2.bias, temp]" in message
    assert f"1 unexpected [{IMAGE}3.mmadapter.adapter_extra]" in message
    assert not output.exists()


def test_a_plain_backbone_checkpoint_is_refused_clearly(tmp_path, reference) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"model": {f"model.{name}": torch.zeros(1) for name in reference.backbone}}, path)
    with pytest.raises(ValueError, match="349 missing .*none of the trained HarMA tensors"):
        convert_original(path, tmp_path / "out.safetensors", quick_gelu=True, backbone_pretrained="x.pt")
    torch.save({name: torch.zeros(1) for name in reference.backbone}, path)
    with pytest.raises(ValueError, match=r"plain\.pt: expected a dict with a 'model' state dict"):
        convert_original(path, tmp_path / "out.safetensors", quick_gelu=True, backbone_pretrained="x.pt")


def test_the_backbone_must_be_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="backbone_output .* or backbone_pretrained"):
        convert_original(tmp_path / "x.pth", tmp_path / "out.safetensors", quick_gelu=False)
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        convert_original(tmp_path / "x.pth", tmp_path / "o.safetensors", quick_gelu=False, backbone_output="b.pt")


# --- safe loading of the config entry ------------------------------------------------------------------
def _small_state() -> OrderedDict:
    state = OrderedDict(temp=torch.tensor(0.07), weight=torch.randn(3, 4))
    state._metadata = {"": {"version": 1}}  # as nn.Module.state_dict() leaves it
    return state


def _save_and_load(tmp_path, config, protocol: int = 2):
    state = _small_state()
    torch.save({"model": state, "config": config}, tmp_path / "checkpoint.pth", pickle_protocol=protocol)
    RAN.clear()
    loaded = load_reference_checkpoint(tmp_path / "checkpoint.pth")
    assert not RAN, RAN
    assert loaded["model"].keys() == state.keys()
    assert all(torch.equal(loaded["model"][name], tensor) for name, tensor in state.items())
    return loaded["config"]


def test_a_plain_config_loads_as_it_is(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="harma_zoo.zoo.convert")
    assert _save_and_load(tmp_path, {"lr": 4e-4, "datasets": ["rsitmd"]}) == {"lr": 4e-4, "datasets": ["rsitmd"]}
    assert "placeholders" not in caplog.text  # torch.load(weights_only=True) read it


def test_a_config_object_is_read_as_plain_data_without_running_its_code(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="harma_zoo.zoo.convert")
    config = _save_and_load(tmp_path, ReferenceConfig())
    assert f"{ReferenceConfig.__module__}.ReferenceConfig" in caplog.text
    assert isinstance(config, UnpickledObject)
    assert config.pickled_class == f"{ReferenceConfig.__module__}.ReferenceConfig"
    state = config.pickled_state
    assert state["lr"] == 4e-4 and state["datasets"] == ["rsitmd", "rsicd"]
    assert state["color"].pickled_class.endswith(".Color") and state["color"].pickled_args == ("red",)
    assert list(state["by_color"].values()) == [1]  # a placeholder can be a dict key


def test_mapping_and_list_subclasses_are_read_as_placeholders(tmp_path) -> None:
    mapping = _save_and_load(tmp_path, SlottedMapping({"lr": 4e-4}))
    assert dict(mapping) == {"lr": 4e-4}
    assert mapping.pickled_state == (None, {"_ok": {1, 2}, "_ref": []})
    sequence = _save_and_load(tmp_path, ListConfig([1, 2, 3]))
    assert sequence.pickled_items == [1, 2, 3]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("protocol", [2, 4])  # torch's default; 4 has opcodes torch's own scanner skips
@pytest.mark.parametrize("function", [eval, os.system], ids=["eval", "os.system"])
def test_pickled_calls_in_the_config_never_run(tmp_path, function, protocol) -> None:
    marker = tmp_path / "ran"
    argument = f"__import__('pathlib').Path({str(marker)!r}).touch()" if function is eval else f"touch {marker}"
    config = _save_and_load(tmp_path, Exploit(function, argument), protocol)
    assert not marker.exists()
    assert isinstance(config, UnpickledObject) and config.pickled_args == (argument,)
