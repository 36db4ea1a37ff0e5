"""Chunked steps and checkpointed blocks change how much memory a step holds, never the step itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from engine_helpers import tiny_cfg

from harma_zoo.engine.hooks import RetrievalValidationHook
from harma_zoo.engine.recipe import build_recipe_model
from harma_zoo.engine.recipe_schema import RecipeError
from harma_zoo.engine.train import build_runner
from harma_zoo.model import RetrievalModel, build_model
from harma_zoo.recompute import encode_in_chunks, is_checkpointed
from harma_zoo.registry import BACKBONES, get_class, registered_names

# Every registered family at its tiny size, and OpenCLIP with a timm image tower too.
BACKBONE_CONFIGS = {
    **{name: {"type": name, **get_class(BACKBONES, name).tiny_options()} for name in registered_names(BACKBONES)},
    "open_clip-timm": {"type": "open_clip", "arch": "harma-tiny-sigmoid"},
}
METHODS = {
    "harma": {"type": "harma", "bottleneck": 8, "shared_width": 8, "heads": 2},
    "lora": {"type": "lora", "rank": 2},
    "adapter": {"type": "adapter", "bottleneck": 4},
    "full": {"type": "full"},
}
# Several captions of one image in the batch, so the multi-positive targets matter.
IMAGE_IDS = torch.tensor([0, 0, 1, 2, 2, 3])
CAPTIONS = [f"{n} white buildings beside a river and a green park" for n in range(len(IMAGE_IDS))]
CHUNK = 4  # uneven: chunks of 4 and 2 rows
SMALL_DATA = {"train_images": 8, "val_images": 4, "size": 32, "seed": 0}

Step = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


def _model(backbone: str, method: dict) -> RetrievalModel:
    """A tiny model in float64 (so that only real differences exceed the tolerance), trained parts perturbed."""
    torch.set_flush_denormal(True)  # as every run does: subnormals of random weights slow CPU math many times
    torch.manual_seed(0)
    model = build_model(BACKBONE_CONFIGS[backbone], method).to(torch.float64)
    with torch.no_grad():  # zero-initialised layers (adapter up, LoRA B) would hide half of the gradients
        for _, parameter in model.trainable_parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.train()


def _batch(model: RetrievalModel) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    size = model.backbone.image_size
    pixels = torch.randn(len(IMAGE_IDS), 3, size, size, generator=torch.Generator().manual_seed(1))
    return pixels.to(torch.float64), model.backbone.tokenize(CAPTIONS)


def _step(model: RetrievalModel, terms: Callable[[], dict[str, torch.Tensor]]) -> Step:
    """Loss terms and the gradient of every trained tensor, from fresh gradients."""
    model.zero_grad(set_to_none=True)
    result = terms()
    result["loss"].backward()
    grads = {name: p.grad.clone() for name, p in model.trainable_parameters()}
    return {name: value.detach() for name, value in result.items()}, grads


def _plain(model: RetrievalModel, chunk_size: int | None = None) -> Step:
    pixels, tokens = _batch(model)
    return _step(model, lambda: model(pixels, tokens, IMAGE_IDS, chunk_size=chunk_size))


def assert_same_step(actual: Step, expected: Step) -> None:
    """Same loss terms; every gradient within 1e-5 relative (plus 1e-9 of the largest, for exact zeros)."""
    (terms, grads), (expected_terms, expected_grads) = actual, expected
    assert terms.keys() == expected_terms.keys() and grads.keys() == expected_grads.keys()
    for name, value in expected_terms.items():
        torch.testing.assert_close(terms[name], value, rtol=1e-9, atol=0, msg=name)
    scale = max(g.abs().max().item() for g in expected_grads.values())
    assert scale > 0
    for name, value in expected_grads.items():
        torch.testing.assert_close(grads[name], value, rtol=1e-5, atol=1e-9 * scale, msg=name)


def _saved_bytes(run: Callable[[], object]) -> int:
    """Bytes of the distinct tensors that autograd keeps for the backward of what ``run`` computes.

    Checkpointed regions keep theirs through their own hooks, which take precedence, so this counts
    what stays in memory outside them until the backward pass.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


# ------------------------------------------------- chunked steps and checkpointed blocks, every family and method


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("backbone", list(BACKBONE_CONFIGS))
def test_chunked_steps_and_checkpointed_blocks_give_the_unchunked_step(backbone: str, method: str) -> None:
    model = _model(backbone, METHODS[method])
    plain = _plain(model)
    assert_same_step(_plain(model, chunk_size=CHUNK), plain)
    model.backbone.checkpoint_blocks()
    assert_same_step(_plain(model), plain)


def test_a_chunk_as_large_as_the_batch_is_the_unchunked_step() -> None:
    model = _model("open_clip", METHODS["harma"])
    pixels, tokens = _batch(model)
    assert _saved_bytes(lambda: model(pixels, tokens, IMAGE_IDS, chunk_size=len(IMAGE_IDS))) == _saved_bytes(
        lambda: model(pixels, tokens, IMAGE_IDS)
    )


def _chunks_with_a_graph(model: RetrievalModel, pixels, tokens) -> dict[str, torch.Tensor]:
    """The chunked computation written out plainly: chunk by chunk, image then text, every graph kept."""
    images, texts = [], []
    for start in range(0, len(pixels), CHUNK):
        rows = slice(start, start + CHUNK)
        images.append(model.encode_image(pixels[rows]))
        texts.append(model.encode_text({key: value[rows] for key, value in tokens.items()}))
    return model.loss.terms(torch.cat(images), torch.cat(texts), IMAGE_IDS)


@pytest.mark.parametrize("backbone", ["open_clip", "hf_clip"])
def test_dropout_is_replayed_in_the_second_pass(backbone: str) -> None:
    """LoRA's dropout draws masks in the first pass; the backward's re-run must draw the same ones."""
    model = _model(backbone, {**METHODS["lora"], "dropout": 0.5})
    pixels, tokens = _batch(model)

    torch.manual_seed(11)
    chunked = _step(model, lambda: model(pixels, tokens, IMAGE_IDS, chunk_size=CHUNK))
    after_chunked = torch.get_rng_state()
    torch.manual_seed(11)
    expected = _step(model, lambda: _chunks_with_a_graph(model, pixels, tokens))
    assert_same_step(chunked, expected)
    # the second pass leaves the random stream where the first pass left it
    assert torch.equal(after_chunked, torch.get_rng_state())
    torch.manual_seed(12)  # other masks, another loss: the dropout is really there
    other = _step(model, lambda: model(pixels, tokens, IMAGE_IDS, chunk_size=CHUNK))
    assert abs(other[0]["loss"] - chunked[0]["loss"]) > 1e-6


def test_the_graph_of_a_chunked_step_keeps_no_encoder_activations() -> None:
    model = _model("open_clip", METHODS["full"])
    pixels, tokens = _batch(model)
    plain = _saved_bytes(lambda: model(pixels, tokens, IMAGE_IDS))
    chunked = _saved_bytes(lambda: model(pixels, tokens, IMAGE_IDS, chunk_size=CHUNK))
    embeddings = 2 * len(IMAGE_IDS) * model.encode_image(pixels[:1]).shape[1] * 8  # two float64 matrices
    assert chunked < 20 * embeddings < plain / 10, (chunked, embeddings, plain)


def test_encode_in_chunks_refuses_a_bad_chunk_size() -> None:
    model = _model("open_clip", METHODS["adapter"])
    pixels, tokens = _batch(model)
    for bad in (0, -2, 2.5, True, None):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            encode_in_chunks(model.encode_image, model.encode_text, pixels, tokens, bad)


# ------------------------------------------------------------------------------------ checkpointed blocks


def test_checkpointed_blocks_replay_dropout_and_keep_less() -> None:
    model = _model("open_clip", {**METHODS["lora"], "dropout": 0.5})
    pixels, tokens = _batch(model)
    torch.manual_seed(5)
    plain = _plain(model)
    plain_bytes = _saved_bytes(lambda: model(pixels, tokens, IMAGE_IDS))
    model.backbone.checkpoint_blocks()
    torch.manual_seed(5)
    assert_same_step(_plain(model), plain)
    assert _saved_bytes(lambda: model(pixels, tokens, IMAGE_IDS)) < plain_bytes / 2


def test_chunked_steps_on_checkpointed_blocks_are_the_unchunked_step() -> None:
    model = _model("open_clip", METHODS["harma"])
    plain = _plain(model)
    model.backbone.checkpoint_blocks()
    assert_same_step(_plain(model, chunk_size=CHUNK), plain)


def test_block_checkpointing_is_undone_and_leaves_the_weights_alone() -> None:
    model = _model("hf_clip", METHODS["lora"])
    state = {name: value.clone() for name, value in model.state_dict().items()}
    layers = [*model.backbone.model.vision_model.encoder.layers, *model.backbone.model.text_model.encoder.layers]
    model.backbone.checkpoint_blocks()
    assert all(is_checkpointed(layer) for layer in layers)
    assert model.state_dict().keys() == state.keys()
    model.backbone.checkpoint_blocks(enabled=False)
    assert not any(is_checkpointed(layer) or "forward" in vars(layer) for layer in layers)
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


# ------------------------------------------------------------------------------------------- in a recipe


def _losses(runner) -> list[float]:
    history = runner.message_hub.get_scalar("train/loss").data[0]
    return [float(value) for value in history]


def test_a_chunked_run_trains_as_the_unchunked_run(tmp_path: Path) -> None:
    # 8 images x 5 captions, batch 10: 4 steps of AdamW with warm-up and decay, then validation. The
    # losses after the first step depend on every update before. (Weights are not compared: entries whose
    # gradient is zero in exact arithmetic, such as attention key biases, get rounding noise that AdamW
    # scales up to steps of the learning rate, without any effect on what the model computes.)
    runs = {}
    for name, changes in {
        "plain": {},
        "chunked": {"schedule__chunk_size": 7},
        "checkpointed": {"model": {"checkpoint_blocks": True}},
    }.items():
        cfg = tiny_cfg(
            tmp_path / name, data__synthetic=SMALL_DATA, schedule__epochs=1, schedule__batch_size=10, **changes
        )
        runner = build_runner(cfg, tmp_path / name / "run")
        runner.train()
        validation = next(hook for hook in runner.hooks if isinstance(hook, RetrievalValidationHook))
        runs[name] = (_losses(runner), validation.best["metrics"])
    losses, metrics = runs["plain"]
    assert len(losses) == 4
    for name in ("chunked", "checkpointed"):
        assert runs[name][0] == pytest.approx(losses, rel=1e-5), name
        assert runs[name][1] == pytest.approx(metrics), name


def test_recipes_refuse_bad_chunk_sizes_and_unknown_model_options(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="schedule.chunk_size must be at least 1, got 0"):
        tiny_cfg(tmp_path / "a", schedule__chunk_size=0)
    with pytest.raises(RecipeError, match="model.checkpoint_block is not an option.*mean model.checkpoint_blocks"):
        tiny_cfg(tmp_path / "b", model={"checkpoint_block": True})
    model = build_recipe_model(tiny_cfg(tmp_path / "c", model={"checkpoint_blocks": True}))
    assert is_checkpointed(model.backbone.model.visual.transformer.resblocks[0])
