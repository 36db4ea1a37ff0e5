"""The Hugging Face transformers families (every registered ``HFDualEncoder``) on tiny random models, offline."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from transformers import BlipModel

from harma_zoo.backbones._hf import HFDualEncoder
from harma_zoo.insertion import attach
from harma_zoo.registry import BACKBONES, METHODS, get_class, registered_names

FAMILIES = [name for name in registered_names(BACKBONES) if issubclass(get_class(BACKBONES, name), HFDualEncoder)]
IMAGE_WIDTH, TEXT_WIDTH = 32, 24  # different, so that a point with the other tower's width is caught
LAYERS = {"image": 2, "text": 3}
# what is known of the built-in families, checked where a family is one of them
TEXT_LENGTH = {"hf_clip": 77, "hf_siglip": 64, "hf_blip": 35}
IMAGE_TOKENS = {"hf_clip": 17, "hf_siglip": 16, "hf_blip": 17}  # (32 / 8) ** 2 patches, plus CLS but for SigLIP
OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
NORMALISATION = {
    "hf_clip": (OPENAI_MEAN, OPENAI_STD),
    "hf_siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "hf_blip": (OPENAI_MEAN, OPENAI_STD),
}
CAPTIONS = ["a red roof beside a road", "héllo wörld: ünïcode", "many boats " * 40]


def test_the_built_in_hf_families_are_covered() -> None:
    assert {"hf_clip", "hf_siglip", "hf_blip"} <= set(FAMILIES)


def tiny_config(family: str) -> dict:
    """The family's tiny configuration with towers of different widths and depths (32 x 2 images, 24 x 3 text)."""
    config = copy.deepcopy(get_class(BACKBONES, family).tiny_options()["config"])
    config["vision_config"].update(hidden_size=IMAGE_WIDTH, intermediate_size=2 * IMAGE_WIDTH,
                                   num_hidden_layers=LAYERS["image"], image_size=32, patch_size=8)  # fmt: skip
    config["text_config"].update(hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH,
                                 num_hidden_layers=LAYERS["text"])  # fmt: skip
    return config


def build(family: str, **options):
    return BACKBONES.build(dict(type=family, **options))


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def backbone(family):
    return build(family, config=tiny_config(family))


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32)


def embed(backbone, pixels) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return backbone.encode_image(pixels), backbone.encode_text(backbone.tokenize(CAPTIONS))


def test_builds_offline_and_encodes_unit_vectors(family, backbone, pixels):
    image, text = embed(backbone, pixels)
    assert image.shape[0] == 2 and text.shape == (len(CAPTIONS), image.shape[1])
    if family in ("hf_clip", "hf_blip", "hf_siglip"):
        assert image.shape[1] == (IMAGE_WIDTH if family == "hf_siglip" else 16)
    assert torch.allclose(image.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(len(CAPTIONS)), atol=1e-5)
    raw = backbone.encode_image(pixels, normalize=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2), atol=1e-3)
    assert backbone.image_size == 32
    if family in NORMALISATION:
        assert backbone.mean == pytest.approx(NORMALISATION[family][0])
        assert backbone.std == pytest.approx(NORMALISATION[family][1])
    assert not backbone.training


def test_tokenize_pads_and_truncates_to_the_family_length(family, backbone):
    tokens = backbone.tokenize(CAPTIONS)
    assert set(tokens) == set(backbone.text_inputs) and "input_ids" in tokens
    length = backbone.max_length
    assert length == TEXT_LENGTH.get(family, length)
    for tensor in tokens.values():
        assert tensor.shape == (len(CAPTIONS), length)
    ids = tokens["input_ids"]
    tokenizer = backbone._tokenizer
    end = ids[0][ids[0] != tokenizer.pad_token_id][-1]  # the token that closes a caption (eos, sep)
    assert end in tokenizer.all_special_ids
    assert (ids == end).sum(dim=1).tolist() == [1, 1, 1]  # truncation keeps the end token
    assert ids[2, -1] == end
    assert ids[0, -1] == tokenizer.pad_token_id
    first = backbone.template.split()[0]
    if first.startswith("{"):  # a start token (bos, cls) opens every caption
        assert (ids[:, 0] == getattr(tokenizer, first.strip("{}") + "_id")).all()
    if "attention_mask" in tokens:
        assert tokens["attention_mask"][0].sum() < length and tokens["attention_mask"][2].all()
    assert int(ids.max()) < backbone.model.config.text_config.vocab_size


def test_text_embeddings_do_not_depend_on_the_batch(backbone):
    with torch.no_grad():
        alone = backbone.encode_text(backbone.tokenize(CAPTIONS[:1]))
        batched = backbone.encode_text(backbone.tokenize(CAPTIONS))
    assert torch.allclose(alone, batched[:1], atol=1e-6)


def test_insertion_points_cover_every_layer_with_its_width(family, backbone, pixels):
    points = backbone.insertion_points()
    widths = {"image": IMAGE_WIDTH, "text": TEXT_WIDTH}
    expected = [
        (tower, block, branch, widths[tower])
        for tower in ("image", "text")
        for block in range(LAYERS[tower])
        for branch in ("attn", "mlp")
    ]
    assert [(p.tower, p.block, p.branch, p.width) for p in points] == expected
    assert len({id(p.module) for p in points}) == len(points)
    seen = {}

    def record(point):
        def function(h):
            seen[point.key] = tuple(h.shape)
            return h

        return function

    attachment = attach((point, record(point)) for point in points)
    embed(backbone, pixels)
    attachment.detach()
    image_tokens = {shape[1] for key, shape in seen.items() if key.startswith("image")}
    assert len(image_tokens) == 1 and image_tokens <= {IMAGE_TOKENS.get(family, *image_tokens)}
    tokens = {"image": next(iter(image_tokens)), "text": backbone.max_length}
    batch = {"image": 2, "text": len(CAPTIONS)}
    assert seen == {p.key: (batch[p.tower], tokens[p.tower], p.width) for p in points}


def test_a_hook_changes_only_its_tower_and_detach_restores(backbone, pixels):
    before_image, before_text = embed(backbone, pixels)
    for point in backbone.insertion_points():
        # a vector, not a scalar: LayerNorm would cancel a shift shared by all features
        offset = torch.linspace(-1.0, 1.0, point.width)
        attachment = attach([(point, lambda h, offset=offset: h + offset)])
        image, text = embed(backbone, pixels)
        changed, unchanged = (image, text) if point.tower == "image" else (text, image)
        before_changed, before_unchanged = (
            (before_image, before_text) if point.tower == "image" else (before_text, before_image)
        )
        assert (changed - before_changed).abs().max() > 1e-4, point.key
        assert torch.equal(unchanged, before_unchanged), point.key
        attachment.detach()
        image, text = embed(backbone, pixels)
        assert torch.equal(image, before_image) and torch.equal(text, before_text), point.key


def test_save_pretrained_round_trips_through_from_pretrained(family, backbone, pixels, tmp_path):
    backbone.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"} <= {
        path.name for path in tmp_path.iterdir()
    }
    loaded = build(family, source=str(tmp_path))
    assert loaded.fingerprint() == backbone.fingerprint()
    assert (loaded.image_size, loaded.mean, loaded.std) == (backbone.image_size, backbone.mean, backbone.std)
    original_tokens, loaded_tokens = backbone.tokenize(CAPTIONS), loaded.tokenize(CAPTIONS)
    assert original_tokens.keys() == loaded_tokens.keys()
    assert all(torch.equal(original_tokens[key], loaded_tokens[key]) for key in original_tokens)
    for expected, actual in zip(embed(backbone, pixels), embed(loaded, pixels), strict=True):
        assert torch.allclose(expected, actual, atol=1e-6)
    # a random model may take its tokenizer from a directory
    retokenized = build(family, config=tiny_config(family), tokenizer=str(tmp_path)).tokenize(CAPTIONS)
    assert all(torch.equal(original_tokens[key], retokenized[key]) for key in original_tokens)


def test_save_weights_is_one_file_that_source_loads_back(family, backbone, pixels, tmp_path):
    path = backbone.save_weights(tmp_path / "weights.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]  # one file, nothing left beside it
    loaded = build(family, **backbone.export_options(), source=str(path))
    assert loaded.fingerprint() == backbone.fingerprint()
    assert (loaded.image_size, loaded.mean, loaded.std, loaded.max_length) == (
        backbone.image_size, backbone.mean, backbone.std, backbone.max_length
    )  # fmt: skip
    original_tokens, loaded_tokens = backbone.tokenize(CAPTIONS), loaded.tokenize(CAPTIONS)
    assert all(torch.equal(original_tokens[key], loaded_tokens[key]) for key in original_tokens)
    for expected, actual in zip(embed(backbone, pixels), embed(loaded, pixels), strict=True):
        assert torch.equal(expected, actual)
    # a tokenizer loaded from somewhere travels with the file, and export_options names it
    backbone.save_pretrained(tmp_path / "pretrained")
    from_directory = build(family, source=str(tmp_path / "pretrained"))
    again = from_directory.save_weights(tmp_path / "again.safetensors")
    assert from_directory.export_options() == {"tokenizer": str(tmp_path / "pretrained")}
    assert build(family, source=str(again)).tokenizer_source == str(tmp_path / "pretrained")


def test_a_weights_file_of_another_kind_is_refused_by_name(family, backbone, tmp_path):
    other = next(name for name in FAMILIES if name != family)
    other_file = build(other, config=tiny_config(other)).save_weights(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=rf"other.safetensors: not a weights file written by {family}'s save_weights"):
        build(family, source=str(other_file))
    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="plain.safetensors: not a weights file"):
        build(family, source=str(tmp_path / "plain.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="junk.safetensors: not a safetensors file"):
        build(family, source=str(tmp_path / "junk.safetensors"))
    with pytest.raises(FileNotFoundError, match="missing.safetensors does not exist"):
        build(family, source=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        backbone.save_weights(tmp_path / "weights.bin")
    assert not (tmp_path / "weights.bin").exists()


def test_embedding_parameters_are_exactly_those_the_embeddings_use(backbone, pixels):
    image = backbone.encode_image(pixels)
    text = backbone.encode_text(backbone.tokenize(CAPTIONS))
    (image.sum() + text.sum()).backward()
    with_gradient = {name for name, parameter in backbone.named_parameters() if parameter.grad is not None}
    assert {name for name, _ in backbone.embedding_parameters()} == with_gradient
    image_grads = {name for name in with_gradient if backbone.tower_of(name) == "image"}
    backbone.zero_grad(set_to_none=True)
    backbone.encode_image(pixels).sum().backward()
    assert {name for name, p in backbone.named_parameters() if p.grad is not None} == image_grads


def test_untrained_harma_leaves_embeddings_unchanged(backbone, pixels):
    before = embed(backbone, pixels)
    method = METHODS.build(dict(type="harma", backbone=backbone, bottleneck=8, shared_width=8, heads=2))
    assert len(method.points) == LAYERS["image"] + LAYERS["text"]
    method.attach(backbone)
    try:
        for expected, actual in zip(before, embed(backbone, pixels), strict=True):
            assert (expected - actual).abs().max() <= 1e-5
        with torch.no_grad():  # once the adapters carry weight, both towers must feel them
            for adapter in (*method.adapters["image"].values(), *method.adapters["text"].values()):
                adapter.up.weight.normal_(std=0.5)
        for expected, actual in zip(before, embed(backbone, pixels), strict=True):
            assert (expected - actual).abs().max() > 1e-4
    finally:
        method.detach()
    for expected, actual in zip(before, embed(backbone, pixels), strict=True):
        assert torch.equal(expected, actual)


def test_hf_clip_matches_clip_model(pixels):
    backbone = build("hf_clip", config=tiny_config("hf_clip"))
    tokens = backbone.tokenize(CAPTIONS)
    model = backbone.model
    with torch.no_grad():
        text = model.get_text_features(**tokens)
        image = model.get_image_features(pixel_values=pixels)
        output = model(**tokens, pixel_values=pixels)
    text = getattr(text, "pooler_output", text)  # transformers 5 returns a model output
    image = getattr(image, "pooler_output", image)
    ours_image, ours_text = embed(backbone, pixels)
    assert torch.allclose(ours_text, torch.nn.functional.normalize(text, dim=-1), atol=1e-6)
    assert torch.allclose(ours_image, torch.nn.functional.normalize(image, dim=-1), atol=1e-6)
    assert torch.allclose(ours_text, output.text_embeds, atol=1e-6)
    assert torch.allclose(ours_image, output.image_embeds, atol=1e-6)


def test_hf_siglip_matches_siglip_model(pixels):
    backbone = build("hf_siglip", config=tiny_config("hf_siglip"))
    tokens = backbone.tokenize(CAPTIONS)
    with torch.no_grad():
        output = backbone.model(input_ids=tokens["input_ids"], pixel_values=pixels)
    ours_image, ours_text = embed(backbone, pixels)
    assert torch.allclose(ours_text, output.text_embeds, atol=1e-6)
    assert torch.allclose(ours_image, output.image_embeds, atol=1e-6)


def test_hf_blip_matches_the_retrieval_models_itc_scores(pixels):
    backbone = build("hf_blip", config=tiny_config("hf_blip"))
    tokens = backbone.tokenize(CAPTIONS)
    with torch.no_grad():
        scores = backbone.model(
            input_ids=tokens["input_ids"],
            pixel_values=pixels,
            attention_mask=tokens["attention_mask"],
            use_itm_head=False,
        ).itm_score
    image, text = embed(backbone, pixels)
    assert scores.shape == (2, len(CAPTIONS))
    assert torch.allclose(image @ text.T, scores, atol=1e-6)


def test_hf_blip_refuses_a_checkpoint_without_its_itc_weights(tmp_path):
    donor = build("hf_blip", config=tiny_config("hf_blip"))
    BlipModel(donor.model.config).save_pretrained(tmp_path)  # a "blip" model without text_encoder / projections
    donor._tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="lacks weights"):
        build("hf_blip", source=str(tmp_path))


def test_a_directory_of_another_model_type_is_refused(tmp_path):
    build("hf_siglip", config=tiny_config("hf_siglip")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="siglip"):
        build("hf_clip", source=str(tmp_path))


def test_a_missing_source_names_it(tmp_path):
    with pytest.raises(OSError, match="no-such-dir"):
        build("hf_clip", source=str(tmp_path / "no-such-dir"))


@pytest.mark.parametrize("options", [{}, {"source": "x", "config": {}}])
def test_exactly_one_of_source_and_config(family, options):
    with pytest.raises(ValueError, match="exactly one"):
        build(family, **options)


def test_a_vocabulary_smaller_than_the_tokenizer_is_refused(family):
    config = tiny_config(family)
    config["text_config"]["vocab_size"] = 100
    with pytest.raises(ValueError, match="vocabulary"):
        build(family, config=config)


def test_no_captions_give_empty_tokens(family, backbone):
    tokens = backbone.tokenize([])
    assert {key: tuple(value.shape) for key, value in tokens.items()} == {
        key: (0, TEXT_LENGTH[family]) for key in backbone.tokenize(["x"])
    }


REAL = {
    "hf_clip": ("openai/clip-vit-base-patch32", 224, 512),
    "hf_siglip": ("google/siglip-base-patch16-224", 224, 768),
    "hf_blip": ("Salesforce/blip-itm-base-coco", 384, 256),
}


@pytest.mark.needs_weights
def test_real_checkpoints_load_from_the_hub(family):
    source, size, dim = REAL[family]
    backbone = build(family, source=source)
    assert backbone.image_size == size and backbone.max_length == TEXT_LENGTH[family]
    assert backbone.mean == pytest.approx(NORMALISATION[family][0])
    with torch.no_grad():
        image = backbone.encode_image(torch.zeros(1, 3, size, size))
        text = backbone.encode_text(backbone.tokenize(["a satellite image of a harbour"]))
    assert image.shape == text.shape == (1, dim)
