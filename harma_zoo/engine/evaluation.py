"""Embedding a split and scoring it (the protocol of docs/recipes.md, "Evaluation"), in one process or many."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch
from mmengine.dist import all_gather_object, get_dist_info
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Subset

from harma_zoo.data.annotations import Annotations
from harma_zoo.data.datasets import ImagesOnly, cleaned_captions
from harma_zoo.engine.checkpoint import load_adapter
from harma_zoo.engine.metric import retrieval_metrics
from harma_zoo.engine.recipe import build_recipe_model, load_split
from harma_zoo.model import RetrievalModel


def _gathered_rows(rows: list[tuple[int, torch.Tensor]], total: int) -> torch.Tensor:
    """Every process's (index, embedding) rows, put back in index order."""
    parts = all_gather_object(rows) if get_dist_info()[1] > 1 else [rows]
    ordered = sorted((index, row) for part in parts for index, row in part)
    if len(ordered) != total:
        raise RuntimeError(f"gathered {len(ordered)} embeddings, expected {total}")
    return torch.stack([row for _, row in ordered])


def default_device() -> torch.device:
    """A CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress_bar(shown: bool) -> Progress:
    """A transient bar per embedding pass (images, captions); ``shown=False`` draws nothing."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, transient=True, disable=not shown)


@contextlib.contextmanager
def embedding_pass(model: RetrievalModel, progress: bool) -> Iterator[Progress]:
    """``model`` in eval mode (its mode restored after) and the progress bars of the passes, drawn by the
    main process only when ``progress``: the setting every evaluation task embeds in."""
    was_training = model.training
    model.eval()
    try:
        with progress_bar(progress and get_dist_info()[0] == 0) as bar:
            yield bar
    finally:
        model.train(was_training)


@torch.no_grad()
def embed_images(
    model: RetrievalModel, annotations: Annotations, batch_size: int, num_workers: int, bar: Progress
) -> torch.Tensor:
    """Normalised embeddings of the split's images, in image order; each process embeds its share."""
    rank, world = get_dist_info()
    device = next(model.parameters()).device
    images = ImagesOnly(annotations, model.backbone.eval_transform())
    share = Subset(images, range(rank, len(images), world))
    task = bar.add_task("embedding images", total=len(share))
    rows: list[tuple[int, torch.Tensor]] = []
    for batch in DataLoader(share, batch_size=batch_size, num_workers=num_workers):
        embeddings = model.encode_image(batch["pixels"].to(device)).float().cpu()
        rows.extend(zip(batch["index"].tolist(), embeddings, strict=True))
        bar.advance(task, len(embeddings))
    return _gathered_rows(rows, len(images))


@torch.no_grad()
def embed_texts(
    model: RetrievalModel, texts: list[str], batch_size: int, bar: Progress, what: str = "captions"
) -> torch.Tensor:
    """Normalised embeddings of ``texts`` (already cleaned), in order; each process embeds its share.

    ``what`` names the texts on the progress bar.
    """
    rank, world = get_dist_info()
    device = next(model.parameters()).device
    starts = range(rank * batch_size, len(texts), world * batch_size)
    task = bar.add_task(f"embedding {what}", total=sum(len(texts[s : s + batch_size]) for s in starts))
    rows: list[tuple[int, torch.Tensor]] = []
    for start in starts:
        chunk = texts[start : start + batch_size]
        tokens = {k: v.to(device) for k, v in model.backbone.tokenize(chunk).items()}
        embeddings = model.encode_text(tokens).float().cpu()
        rows.extend(zip(range(start, start + len(chunk)), embeddings, strict=True))
        bar.advance(task, len(chunk))
    return _gathered_rows(rows, len(texts))


def embed_split(
    model: RetrievalModel,
    annotations: Annotations,
    batch_size: int = 64,
    num_workers: int = 0,
    max_words: int = 30,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised image and caption embeddings of a split; each process embeds its share.

    ``progress`` draws a bar per pass on the main process: a large split takes minutes on a CPU.
    """
    with embedding_pass(model, progress) as bar:
        image_emb = embed_images(model, annotations, batch_size, num_workers, bar)
        text_emb = embed_texts(model, cleaned_captions(annotations, max_words), batch_size, bar)
    return image_emb, text_emb


def evaluate(
    model: RetrievalModel, annotations: Annotations, batch_size: int = 64, num_workers: int = 0, progress: bool = False
) -> dict:
    """R@1/5/10 both ways and mR, in percent, of ``model`` on one split."""
    return evaluate_with_images(model, annotations, batch_size, num_workers, progress)[0]


def evaluate_with_images(
    model: RetrievalModel, annotations: Annotations, batch_size: int = 64, num_workers: int = 0, progress: bool = False
) -> tuple[dict, torch.Tensor]:
    """``evaluate``'s metrics and the split's image embeddings, for a second task that reuses them (the
    bench's zero-shot classification) instead of embedding the images again."""
    image_emb, text_emb = embed_split(model, annotations, batch_size, num_workers, progress=progress)
    return retrieval_metrics(image_emb, text_emb, torch.as_tensor(annotations.caption_image)), image_emb


def build_for_evaluation(cfg, checkpoint: str | Path | None) -> tuple[RetrievalModel, dict]:
    """The recipe's model with ``checkpoint`` loaded (none: the bare backbone, zero-shot)."""
    model = build_recipe_model(cfg)
    metadata = load_adapter(model, checkpoint, cfg.method.to_dict()) if checkpoint else {}
    return model.eval(), metadata


class Evaluation(NamedTuple):
    """What ``evaluate_recipe`` measured, and on what."""

    metrics: dict[str, float]
    images: int
    captions: int
    device: str


def evaluate_recipe(
    cfg,
    checkpoint: str | Path | None,
    split: str = "val",
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Evaluation:
    """Metrics of a recipe's model (with an adapter checkpoint, or zero-shot) on one of its splits.

    The model runs on ``device`` (default: CUDA when there is one); ``data.limit`` in the recipe
    evaluates only the split's first images.
    """
    device = torch.device(device) if device is not None else default_device()
    model, _ = build_for_evaluation(cfg, checkpoint)
    annotations = load_split(cfg, split)
    batch = batch_size or cfg.schedule.get("val_batch_size", 64)
    metrics = evaluate(model.to(device), annotations, batch, cfg.schedule.get("num_workers", 0), progress)
    return Evaluation(metrics, annotations.num_images, annotations.num_captions, str(device))
