"""Model cards for bench runs: an adapter from a run's ``result.json`` to ``harma_zoo.zoo.cards``.

``cards.render_card(entry, backbone_entry)`` renders a *registry* entry (a published
checkpoint with URLs, sha256 and a registered backbone). A bench run is none of that yet,
so this module builds the two entries from the run: the backbone entry is the registry's
when ``registry/backbones.yaml`` has one that matches the run's backbone config, else a
stand-in (licence and citation ``unknown``); the checkpoint entry points at the run's
local ``best.safetensors``. Its "Use" section says how to evaluate, load or publish the
run, which ``harma-zoo fetch`` does not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harma_zoo.data.readers import reader_spec
from harma_zoo.engine.checkpoint import read_metadata
from harma_zoo.fileio import atomic_write
from harma_zoo.hub.download import sha256_file
from harma_zoo.hub.index import (
    BackboneEntry,
    CheckpointEntry,
    Weights,
    family_class,
    load_index,
    match_backbone,
    weights_option,
)
from harma_zoo.model import resolved_method
from harma_zoo.zoo.cards import render_card
from harma_zoo.zoo.publish import tensor_counts


def _registry_backbone(config: dict[str, Any]):
    """The registry's backbone entry for ``config``, or None (no registry, no match, or several)."""
    try:
        return match_backbone(load_index(), config)
    except (FileNotFoundError, ValueError):
        return None


def backbone_entry(result: dict[str, Any]):
    """The run's backbone as a registry ``BackboneEntry``: the registered one, else a stand-in."""
    config = dict(result["backbone"])
    found = _registry_backbone(config)
    if found is not None:
        return found
    family = config.pop("type")
    weights = config.pop(weights_option(family), None)
    if weights is None:
        kind = "random"
    elif Path(str(weights)).exists() or str(weights).endswith((".pt", ".pth", ".bin", ".safetensors")):
        kind = "file"
    else:  # a name the family's loader resolves itself: an OpenCLIP tag, a hub id
        kind = next((kind for kind in ("tag", "hub") if kind in family_class(family).weights_kinds), "file")
    # Built without the registry's checks: its name is a label (`open_clip:ViT-B-32`), its file a local path.
    return BackboneEntry.model_construct(
        name=result["backbone_label"],
        family=family,
        architecture=config,
        weights=Weights.model_construct(kind=kind, source=None if weights is None else str(weights)),
        license="unknown",
        citation="unknown",
        description="Not in the zoo registry: the backbone config this bench run was given.",
    )


def checkpoint_entry(result: dict[str, Any], out: Path, backbone_name: str):
    """The run's best checkpoint as a registry ``CheckpointEntry`` (its URL: the path under ``out``)."""
    checkpoint = out / result["checkpoint"]
    metadata = read_metadata(checkpoint)
    _, groups = tensor_counts(checkpoint)
    data = result["dataset"]
    return CheckpointEntry(
        name=result["run"],
        backbone=backbone_name,
        method=resolved_method(result["method"]["options"], result["method"].get("used")),
        loss=result["loss"],
        recipe=result["config"],
        dataset={
            "name": data["name"],
            "reader": reader_spec(data["reader"])[0],  # the layout's name, as checkpoints record it
            **{k: data[k] for k in ("train", "val", "test") if data.get(k)},
        },
        selected_on=result.get("selected_on"),
        epoch=result.get("best_epoch"),
        metrics=result["metrics"],
        parameters={"trainable": result["parameters"]["trainable"], "groups": groups},
        urls=[result["checkpoint"]],
        sha256=sha256_file(checkpoint),
        size=checkpoint.stat().st_size,
        card=f"cards/{result['run']}.md",
        backbone_fingerprint=metadata["backbone_fingerprint"],
        toolkit_version=result.get("toolkit_version", metadata.get("toolkit_version", "")),
        description=f"Trained by `harma-zoo bench` (run `{result['run']}`).",
    )


def bench_use(result: dict[str, Any]) -> str:
    """The card's "Use" section: the run is local, not in the zoo, so it is used by its paths."""
    run, config, checkpoint = result["run"], result["config"], result["checkpoint"]
    return (
        f"This card describes run `{run}` of `harma-zoo bench`, not a published zoo entry: `harma-zoo fetch` "
        f"and `harma_zoo.load_pretrained({run!r})` do not know it. Its paths are relative to the bench output "
        "folder. Evaluate it with\n\n"
        f"```bash\nharma-zoo eval {config} --checkpoint {checkpoint} --split val\n```\n\n"
        f'load it in Python with `harma_zoo.load_pretrained("{checkpoint}")`, or add it to the zoo with '
        f"`harma-zoo publish runs/{run}`. The run took {result['wall_time_s']:.0f} s, seed {result['seed']}."
    )


def render_bench_card(result: dict[str, Any], out: Path) -> str:
    """The run's card through ``harma_zoo.zoo.cards.render_card``, its "Use" section saying how to use the run."""
    backbone = backbone_entry(result)
    return render_card(checkpoint_entry(result, out, backbone.name), backbone, use=bench_use(result))


def write_bench_card(result: dict[str, Any], out: Path) -> Path:
    """``<out>/cards/<run id>.md``, rewritten only when the run's result is newer than the card."""
    out = Path(out)
    path = out / "cards" / f"{result['run']}.md"
    result_file = out / "runs" / result["run"] / "result.json"
    if path.is_file() and result_file.is_file() and path.stat().st_mtime_ns >= result_file.stat().st_mtime_ns:
        return path
    text = render_bench_card(result, out)
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return path
