"""Model cards, generated from a checkpoint's registry entry and its backbone's entry; never written by hand.

A card is Markdown with Hugging Face style YAML front matter (``library_name``, ``license``,
``tags``, ``datasets``, ``base_model`` when the backbone is a hub model, and ``model-index``
with the retrieval metrics of every split the checkpoint was scored on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harma_zoo.engine.metric import metric_name
from harma_zoo.fileio import atomic_write
from harma_zoo.hub.index import BackboneEntry, CheckpointEntry, ZooIndex, load_index

HARMA_CITATION = """\
@misc{huang2024harma,
  title         = {Efficient Remote Sensing with Harmonized Transfer Learning and Modality Alignment},
  author        = {Huang, Tengjun and others},
  year          = {2024},
  eprint        = {2404.18253},
  archivePrefix = {arXiv},
  note          = {ICLR 2024 Workshop on Mathematical and Empirical Understanding of Foundation Models}
}
"""
TASK = {"type": "image-text-retrieval", "name": "Image-Text Retrieval"}
DATASET_NAMES = {"rsicd": "RSICD", "rsitmd": "RSITMD", "synthetic": "harma-zoo synthetic scenes"}
REMOTE_SENSING = {"rsicd", "rsitmd", "ucm", "sydney", "nwpu"}


def base_model(backbone: BackboneEntry) -> str | None:
    """The Hugging Face model id the backbone's weights come from, when they come from the hub."""
    weights = backbone.weights
    if weights.kind == "hub":
        return weights.source
    if weights.kind == "url" and weights.source.startswith("hf://"):
        owner, repo = weights.source.removeprefix("hf://").split("/")[:2]
        return f"{owner}/{repo}"
    return None


def front_matter(entry: CheckpointEntry, backbone: BackboneEntry) -> dict[str, Any]:
    """The card's YAML metadata, Hugging Face model-card style."""
    dataset = entry.dataset["name"]
    tags = [
        "harma-zoo",
        "image-text-retrieval",
        "parameter-efficient-fine-tuning",
        entry.method["type"],
        backbone.family,
        "safetensors",
    ]
    if dataset.lower() in REMOTE_SENSING:
        tags.append("remote-sensing")
    metadata: dict[str, Any] = {
        "library_name": "harma-zoo",
        "license": backbone.license,
        "tags": tags,
        "datasets": [dataset],
    }
    if hub := base_model(backbone):
        metadata["base_model"] = hub
    results = []
    for split, metrics in entry.metrics.items():
        results.append(
            {
                "task": dict(TASK),
                "dataset": {"name": DATASET_NAMES.get(dataset.lower(), dataset), "type": dataset, "split": split},
                "metrics": [
                    {"type": key, "value": round(float(value), 4), "name": f"{metric_name(key)} ({split})"}
                    for key, value in metrics.items()
                ],
            }
        )
    metadata["model-index"] = [{"name": entry.name, "results": results}]
    return metadata


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _options(options: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        return f"[{', '.join(map(str, value))}]" if isinstance(value, (list, tuple)) else str(value)

    return ", ".join(f"`{key}={shown(value)}`" for key, value in options.items() if key != "type") or "none"


def _method_text(method: dict[str, Any]) -> str:
    text = f"**{method['type']}** with options {_options(method)}."
    if method["type"] == "harma":
        towers = list(method.get("shared_towers") or [])
        if towers == ["text"]:
            where = "in the text tower only, as the authors' released code runs it"
        elif sorted(towers) == ["image", "text"]:
            where = "in both towers (one module per block used by the image and the text tower), as the paper describes"
        else:
            where = f"in: {', '.join(towers) or 'no tower'}"
        text += f" Its shared modules ran {where} (`shared_towers: [{', '.join(towers)}]`)."
    return text


def _metric_rows(entry: CheckpointEntry) -> str:
    keys = list(dict.fromkeys(key for metrics in entry.metrics.values() for key in metrics))
    if not keys:
        return "No metrics were recorded for this checkpoint."
    rows = [
        [split + (" (selection)" if split == entry.selected_on else "")]
        + [f"{metrics[key]:.2f}" if key in metrics else "" for key in keys]
        for split, metrics in entry.metrics.items()
    ]
    return _table(["split", *keys], rows)


def _weights_text(backbone: BackboneEntry) -> str:
    weights = backbone.weights
    if weights.kind == "random":
        return "random weights (built from the architecture alone, seeded by the recipe)"
    kinds = {"tag": "OpenCLIP pretrained tag", "hub": "Hugging Face model", "url": "file", "file": "repo file"}
    sha = f", sha256 `{weights.sha256}`" if weights.sha256 else ""
    return f"{kinds[weights.kind]} `{weights.source}`{sha}"


def _citation(text: str) -> str:
    text = text.strip()
    return f"```bibtex\n{text}\n```" if text.startswith("@") else text


def published_use(entry: CheckpointEntry, backbone_entry: BackboneEntry) -> str:
    """The "Use" section of a published checkpoint: load it by name in Python, or fetch and evaluate it."""
    backbone_fetch = (
        f"harma-zoo fetch {backbone_entry.name}   # its backbone's weights file\n"
        if backbone_entry.weights.kind in ("url", "file")
        else ""
    )
    recipe = entry.recipe or "RECIPE"
    return (
        "In Python: the adapter and its backbone's weights are fetched into the zoo cache and checked "
        "against the registry's sha256 on first use.\n\n"
        "```python\n"
        "import torch\n"
        "from PIL import Image\n\n"
        "import harma_zoo\n\n"
        f'model, transform, tokenizer = harma_zoo.load_pretrained("{entry.name}")\n'
        "with torch.no_grad():\n"
        '    images = model.encode_image(torch.stack([transform(Image.open("scene.jpg").convert("RGB"))]))\n'
        '    texts = model.encode_text(tokenizer(["an airport with parked planes", "a beach"]))\n'
        "print(texts @ images.T)  # cosine similarities: the embeddings are L2-normalised\n"
        "```\n\n"
        "From the command line:\n\n"
        "```bash\n"
        f"harma-zoo fetch {entry.name}   # into the zoo cache, sha256-checked; prints the path\n"
        f"{backbone_fetch}"
        f"harma-zoo eval {recipe} --checkpoint PATH --split {entry.selected_on or 'val'}\n"
        "```\n\n"
        f"The adapter file is `{entry.urls[0]}` in the zoo registry."
    )


def render_card(entry: CheckpointEntry, backbone_entry: BackboneEntry, use: str | None = None) -> str:
    """The Markdown model card of ``entry`` (whose backbone is ``backbone_entry``).

    ``use`` replaces the "Use" section, which by default says how to load and fetch a published entry.
    """
    if entry.backbone != backbone_entry.name:
        raise ValueError(f"checkpoint {entry.name!r} is for backbone {entry.backbone!r}, not {backbone_entry.name!r}")
    metadata = yaml.safe_dump(front_matter(entry, backbone_entry), sort_keys=False, allow_unicode=True)
    dataset = entry.dataset
    splits = [f"{split}: `{dataset[split]}`" for split in ("train", "val", "test") if dataset.get(split)]
    counts = [
        f"{key.replace('_', ' ')}: {dataset[key]:,}"
        for key in ("train_images", "train_captions", "val_images")
        if key in dataset
    ]
    selection = (
        f"the epoch with the best validation mR was kept (split `{entry.selected_on}`"
        + (f", epoch {entry.epoch})" if entry.epoch is not None else ")")
        if entry.selected_on
        else "not recorded (e.g. a converted checkpoint)"
    )
    groups = entry.parameters.get("groups") or {}
    parameter_rows = [[f"`{group}`", f"{count:,}"] for group, count in groups.items()]
    parameter_rows.append(["**trainable, all**", f"**{entry.parameters['trainable']:,}**"])
    sections = [
        f"---\n{metadata}---",
        f"# {entry.name}",
        "<!-- Generated from registry/checkpoints.yaml by `harma-zoo publish` (all cards: `make cards`); "
        "do not edit by hand. -->",
        (
            f"A {entry.method['type']} adapter for the **{backbone_entry.name}** backbone, trained for image-text "
            f"retrieval on **{DATASET_NAMES.get(dataset['name'].lower(), dataset['name'])}** with harma-zoo "
            f"{entry.toolkit_version}. Only the trained tensors are stored; the backbone stays frozen and is "
            "loaded from its own weights." + (f" {entry.description}" if entry.description else "")
        ),
        "## Model",
        "\n".join(
            [
                f"- Backbone: `{backbone_entry.name}`: family `{backbone_entry.family}`, architecture "
                f"{_options(backbone_entry.architecture)}, {_weights_text(backbone_entry)}; licence "
                f"`{backbone_entry.license}`. {backbone_entry.description}".rstrip(),
                f"- Backbone fingerprint: `{entry.backbone_fingerprint}` (loading refuses other weights).",
                f"- Method: {_method_text(entry.method)}",
                f"- Loss: `{entry.loss['type']}`"
                + (f" with options {_options(entry.loss)}." if len(entry.loss) > 1 else "."),
                f"- Recipe: `{entry.recipe}`.",
            ]
        ),
        "## Data",
        "\n".join(
            [
                f"- Dataset: `{dataset['name']}`"
                + (f", read with `{dataset['reader']}`" if dataset.get("reader") else "")
                + ".",
                f"- Splits: {', '.join(splits) or 'not recorded'}." + (f" ({'; '.join(counts)})" if counts else ""),
                f"- Model selection: {selection}; the test split is never used for selection.",
            ]
        ),
        "## Results",
        "Retrieval recall in percent (R@K image-to-text and text-to-image, mR their mean).\n\n" + _metric_rows(entry),
        "## Parameters",
        _table(["trained tensors", "parameters"], parameter_rows),
        "## Files",
        _table(
            ["file", "sha256", "bytes"], [[f"`{url}`", f"`{entry.sha256}`", f"{entry.size:,}"] for url in entry.urls]
        ),
        "## Use",
        use if use is not None else published_use(entry, backbone_entry),
        "## Citation",
        f"HarMA:\n\n```bibtex\n{HARMA_CITATION.strip()}\n```",
        f"Backbone ({backbone_entry.name}):\n\n" + _citation(backbone_entry.citation),
    ]
    return "\n\n".join(sections) + "\n"


def card_metadata(text: str) -> dict[str, Any]:
    """The YAML front matter of a card."""
    if not text.startswith("---\n"):
        raise ValueError("a model card starts with YAML front matter between '---' lines")
    block, separator, _ = text[4:].partition("\n---\n")
    if not separator:
        raise ValueError("the card's front matter is not closed by a '---' line")
    return yaml.safe_load(block)


def write_card(entry: CheckpointEntry, backbone_entry: BackboneEntry, path: str | Path) -> Path:
    """Render the card and write it to ``path`` atomically."""
    text = render_card(entry, backbone_entry)
    path = Path(path)
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return path


def write_registry_cards(index: ZooIndex) -> list[Path]:
    """Render every checkpoint's card again from the registry, at its ``card`` path (relative to the
    project root): after a change to the renderer, no card is left stale."""
    root = index.project_root
    return [
        write_card(entry, index.backbone(entry.backbone), root / entry.card) for entry in index.checkpoints.values()
    ]


if __name__ == "__main__":  # `make cards`
    for written in write_registry_cards(load_index()):
        print(written)
