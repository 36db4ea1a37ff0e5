"""Zero-shot scene classification: the second task remote-sensing CLIP models are judged on.

Each class is named in a few prompt templates ("an aerial photograph of {}."); the prompts of a class are
embedded, averaged and normalised again (CLIP's prompt ensembling), and an image is assigned the class whose
prompt embedding scores highest. A split's images are labelled by their file-name prefix (RSICD, the
synthetic dataset: ``airport_12.jpg``) or by the folder they are in (AID, UCM, RESISC45: ``airport/1.jpg``,
read with the ``class_folders`` reader); images without a class are left out and counted.

Ties are pessimistic as in retrieval (``harma_zoo.engine.metric``): the rank of the right class is the
number of other classes scoring at least as high, so a collapsed model that scores every class alike gets
(nearly) zero, not 100% top-1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import torch
from mmengine.config import Config
from torch import Tensor

from harma_zoo.data.annotations import Annotations, scene_class
from harma_zoo.data.text import clean_caption
from harma_zoo.engine.evaluation import (
    build_for_evaluation,
    default_device,
    embed_images,
    embed_texts,
    embedding_pass,
)
from harma_zoo.engine.recipe import load_split
from harma_zoo.engine.recipe_schema import ZeroshotSection
from harma_zoo.fileio import atomic_write
from harma_zoo.model import RetrievalModel

TOP_KS = (1, 5)
MEAN_CLASS_RECALL = "mean_class_recall"
# the metrics' headers in tables (harma_zoo.engine.report.metrics_table)
COLUMNS = {**{f"top{k}": f"top-{k}" for k in TOP_KS}, MEAN_CLASS_RECALL: "mean class recall"}
TASK = "zeroshot-classification"


def image_class(name: str, labels: str) -> str | None:
    """The class of an image from its name: the file-name prefix (``file_name``) or its folder (``folder``)."""
    if labels == "folder":
        return PurePath(name).parent.name or None
    return scene_class(name)


class LabelledImages(NamedTuple):
    """The images of a split that have one of the candidate classes, with the index of that class."""

    annotations: Annotations
    labels: Tensor
    classes: list[str]
    unlabelled: int
    positions: Tensor  # of the labelled images in the split


def labelled_images(annotations: Annotations, section: ZeroshotSection) -> LabelledImages:
    """The split's images labelled by ``section.labels``; candidates: ``section.classes``, else every class found."""
    found = [image_class(name, section.labels) for name in annotations.names]
    classes = list(section.classes) if section.classes else sorted({c for c in found if c})
    index = {name: i for i, name in enumerate(classes)}
    kept = [i for i, name in enumerate(found) if name in index]
    if len(classes) < 2 or not kept:
        raise ValueError(
            f"{annotations.source}: zero-shot classification needs images of at least two classes; found "
            f"{len(kept)} labelled image(s) of {len(classes)} class(es) reading classes by {section.labels!r} "
            "(zeroshot.labels: 'file_name' for airport_1.jpg, 'folder' for airport/1.jpg)"
        )
    labels = torch.tensor([index[found[i]] for i in kept], dtype=torch.long)
    unlabelled = annotations.num_images - len(kept)
    return LabelledImages(annotations.subset(kept), labels, classes, unlabelled, torch.tensor(kept, dtype=torch.long))


def class_prompts(classes: Sequence[str], section: ZeroshotSection, max_words: int = 30) -> list[str]:
    """Every class in every template, class-major, cleaned as captions are (the model was tuned on those)."""
    spoken = [section.class_names.get(name, name.replace("_", " ")) for name in classes]
    return [clean_caption(template.format(name), max_words) for name in spoken for template in section.templates]


def class_embeddings(prompt_emb: Tensor, classes: int) -> Tensor:
    """One embedding per class: the mean of its prompts' embeddings, normalised again."""
    mean = prompt_emb.reshape(classes, -1, prompt_emb.shape[-1]).mean(dim=1)
    return torch.nn.functional.normalize(mean, dim=-1)


def classification_metrics(scores: Tensor, labels: Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Top-k accuracy, mean per-class recall (in %) and the confusion matrix of (images x classes) scores."""
    if scores.shape != (len(labels), len(classes)):
        raise ValueError(f"scores of shape {tuple(scores.shape)}; expected ({len(labels)}, {len(classes)})")
    own = scores.gather(1, labels[:, None])
    others = torch.ones_like(scores, dtype=torch.bool).scatter_(1, labels[:, None], False)
    ranks = ((scores >= own) & others).sum(dim=1)  # pessimistic ties: a tying wrong class ranks first
    hidden_own = scores.masked_fill(~others, float("-inf"))
    predicted = torch.where(ranks == 0, labels, hidden_own.argmax(dim=1))
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    per_class = {}
    for i, name in enumerate(classes):
        total = int(confusion[i].sum())
        if total:
            per_class[name] = 100.0 * int(confusion[i, i]) / total
    metrics = {f"top{k}": 100.0 * (ranks < k).double().mean().item() for k in TOP_KS}
    metrics[MEAN_CLASS_RECALL] = sum(per_class.values()) / len(per_class)
    return {"metrics": metrics, "per_class_recall": per_class, "confusion": confusion.tolist()}


def classify(
    model: RetrievalModel,
    annotations: Annotations,
    section: ZeroshotSection,
    batch_size: int = 64,
    num_workers: int = 0,
    max_words: int = 30,
    progress: bool = False,
    split_image_emb: Tensor | None = None,
) -> dict[str, Any]:
    """Zero-shot classification of a split's labelled images: metrics, per-class recall, confusion, counts.

    ``split_image_emb``: the split's image embeddings when a retrieval pass has made them already (the
    bench does both tasks), so the labelled images are not decoded and embedded a second time.
    """
    chosen = labelled_images(annotations, section)
    if split_image_emb is not None and len(split_image_emb) != annotations.num_images:
        raise ValueError(
            f"{annotations.source}: {len(split_image_emb)} image embeddings given for {annotations.num_images} images"
        )
    with embedding_pass(model, progress) as bar:
        if split_image_emb is None:
            image_emb = embed_images(model, chosen.annotations, batch_size, num_workers, bar)
        else:
            image_emb = split_image_emb[chosen.positions]
        prompts = class_prompts(chosen.classes, section, max_words)
        prompt_emb = embed_texts(model, prompts, batch_size, bar, "class prompts")
    scores = image_emb @ class_embeddings(prompt_emb, len(chosen.classes)).T
    outcome = classification_metrics(scores, chosen.labels, chosen.classes)
    outcome.update(classes=chosen.classes, images=len(chosen.labels), unlabelled_images=chosen.unlabelled)
    return outcome


def zeroshot_section(cfg: Config) -> ZeroshotSection:
    """The recipe's ``zeroshot`` section, or the defaults (file-name classes, the built-in templates)."""
    return ZeroshotSection(**cfg.get("zeroshot", {}))


def classify_recipe(
    cfg: Config,
    checkpoint: str | Path | None,
    split: str = "val",
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Zero-shot classification by a recipe's model (with an adapter checkpoint, or the bare backbone)."""
    device = torch.device(device) if device is not None else default_device()
    model, _ = build_for_evaluation(cfg, checkpoint)
    batch = batch_size or cfg.schedule.get("val_batch_size", 64)
    outcome = classify(
        model.to(device),
        load_split(cfg, split),
        zeroshot_section(cfg),
        batch,
        cfg.schedule.get("num_workers", 0),
        cfg.data.get("max_words", 30),
        progress,
    )
    return {**outcome, "device": str(device)}


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str):
    """The confusion matrix as a heat map of per-class recall (rows: true class, columns: predicted)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend state
    from matplotlib.figure import Figure

    counts = torch.tensor(confusion, dtype=torch.float64)
    shares = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = 3 + 0.28 * len(classes)
    chart = Figure(figsize=(size + 1.5, size), dpi=110, layout="constrained")
    FigureCanvasAgg(chart)
    axes = chart.add_subplot()
    shown = axes.imshow(shares.numpy(), cmap="viridis", vmin=0, vmax=1)
    axes.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    axes.set_yticks(range(len(classes)), classes, fontsize=7)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title, fontsize=9)
    chart.colorbar(shown, ax=axes, label="share of the true class")
    return chart


def write_confusion_png(outcome: dict[str, Any], path: str | Path, title: str) -> None:
    """Write ``confusion_figure`` of a ``classify`` outcome as a PNG, atomically."""
    chart = confusion_figure(outcome["confusion"], outcome["classes"], title)
    atomic_write(Path(path), lambda temporary: chart.savefig(temporary, format="png"))
