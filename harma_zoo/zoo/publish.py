"""Publishing a trained adapter: its file, its ``registry/checkpoints.yaml`` entry and its model card.

Everything the entry says is read from the checkpoint itself (``read_metadata``) and its tensors;
nothing is typed in twice. The file is stored as ``<name>-<sha256[:8]>.safetensors`` (OpenMMLab
style), so a re-published checkpoint never overwrites the file the registry still points to; the
registry is rewritten atomically under a lock, and re-publishing a name replaces its entry.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open

from harma_zoo import __version__
from harma_zoo.engine.checkpoint import read_metadata
from harma_zoo.engine.metric import METRIC_KEYS
from harma_zoo.fileio import atomic_write, lock_current_file
from harma_zoo.hub.download import sha256_file
from harma_zoo.hub.index import (
    CHECKPOINTS_FILE,
    NAME,
    CheckpointEntry,
    ZooIndex,
    backbone_matches,
    check_checkpoints,
    display_path,
    entry_dict,
    load_index,
    match_backbone,
    read_entries,
)
from harma_zoo.hub.schema import modeline
from harma_zoo.plaindata import as_json_data
from harma_zoo.zoo.cards import write_card
from harma_zoo.zoo.catalog import dataset_name

CHECKPOINT_FILE = "best.safetensors"
HEADER = (
    f"{modeline(CHECKPOINTS_FILE)}\n"
    "# Published adapter checkpoints, written by `harma-zoo publish` (fields: registry/README.md).\n"
    "# Only checkpoints that really exist are listed. Do not edit by hand: publish again instead.\n"
)


def tensor_counts(path: str | Path) -> tuple[int, dict[str, int]]:
    """(total numel, numel per group) of the tensors in a safetensors file, read from its header.

    A group is a tensor name up to its first block index (``method.adapters.image``,
    ``method.shared``), or without its last part when it has none (``loss.contrastive``).
    """
    groups: dict[str, int] = defaultdict(int)
    with safe_open(str(path), framework="pt") as handle:
        names = handle.keys()
        for name in names:
            numel = 1
            for size in handle.get_slice(name).get_shape():
                numel *= size
            parts = name.split(".")
            cut = next((i for i, part in enumerate(parts) if part.isdigit()), len(parts) - 1)
            groups[".".join(parts[:cut]) or name] += numel
    return sum(groups.values()), dict(sorted(groups.items()))


def resolved_method(method: dict[str, Any], used: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's options with every default filled in (a HarMA run's ``shared_towers``, say).

    ``used`` holds the options the built method reported (a checkpoint's ``extra.method_options``): they
    fill what a method sizes from its backbone (HarMA's unset bottleneck) and what this config leaves None.
    """
    from harma_zoo.registry import METHODS, get_class

    options = {key: value for key, value in method.items() if key != "type"}
    resolved = dataclasses.asdict(get_class(METHODS, method["type"]).make_options(**options))
    resolved.update({key: value for key, value in (used or {}).items() if resolved.get(key) is None})
    return {"type": method["type"], **as_json_data(resolved)}


def _ordered(metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics in reading order: R@1/5/10 image-to-text, then text-to-image, then mR, then any others."""
    rank = {key: position for position, key in enumerate(METRIC_KEYS)}
    keys = sorted(metrics, key=lambda key: (rank.get(key, len(rank)), key))
    return {key: float(metrics[key]) for key in keys}


def infer_dataset(run_dir: Path, recipe: str) -> str:
    """The dataset's name, from the recipe mmengine saved in the run folder, else from ``recipes/``."""
    from harma_zoo.engine.recipe import load_recipe
    from harma_zoo.resources import recipe_path

    candidates = [run_dir / f"{recipe}.py"]
    with suppress(FileNotFoundError):
        candidates.append(recipe_path(recipe))
    for path in candidates:
        if path.is_file():
            return dataset_name(load_recipe(path).data.to_dict())
    raise ValueError(
        f"cannot tell the dataset of {run_dir}: neither {candidates[0]} nor a recipe {recipe!r} in "
        "recipes/ exists; pass --dataset NAME"
    )


def _relative_or_absolute(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def build_entry(
    index: ZooIndex,
    checkpoint: Path,
    *,
    name: str,
    url: str,
    card: str,
    backbone: str | None = None,
    dataset: str | None = None,
    run_dir: Path | None = None,
    recipe: str | None = None,
) -> CheckpointEntry:
    """The registry entry of an adapter checkpoint file, from its metadata and tensors."""
    metadata = read_metadata(checkpoint)
    config = metadata["backbone"]
    if backbone is not None:
        backbone_entry = index.backbone(backbone)
        if not backbone_matches(backbone_entry, config):
            raise ValueError(
                f"{checkpoint} was trained on backbone {config}, which is not entry {backbone!r} "
                f"({backbone_entry.family}, {backbone_entry.architecture}, {backbone_entry.weights})"
            )
    else:
        backbone_entry = match_backbone(index, config)
        if backbone_entry is None:
            raise ValueError(
                f"{checkpoint}: no entry in {display_path(index.root / 'backbones.yaml')} is the "
                f"backbone {config}; add one (or name one with --backbone)"
            )
    extra = metadata.get("extra") or {}
    recorded = dict(metadata.get("dataset") or {})
    selected_on = extra.get("selected_on", recorded.pop("selected_on", None))
    recorded.pop("selected_on", None)
    if selected_on == "test":
        raise ValueError(f"{checkpoint} was selected on the test split; the zoo publishes no such checkpoint")
    recipe = recipe or metadata.get("recipe") or ""
    if dataset is None:
        dataset = infer_dataset(run_dir or checkpoint.parent, recipe)
    trainable, groups = tensor_counts(checkpoint)
    return CheckpointEntry(
        name=name,
        backbone=backbone_entry.name,
        method=resolved_method(metadata["method"], extra.get("method_options")),
        loss=as_json_data(metadata.get("loss") or {"type": "harma"}),
        recipe=recipe,
        dataset={"name": dataset, **as_json_data(recorded)},
        selected_on=selected_on,
        epoch=extra.get("epoch"),
        metrics={split: _ordered(values) for split, values in (metadata.get("metrics") or {}).items()},
        parameters={"trainable": trainable, "groups": groups},
        urls=[url],
        sha256=sha256_file(checkpoint),
        size=checkpoint.stat().st_size,
        card=card,
        backbone_fingerprint=metadata["backbone_fingerprint"],
        toolkit_version=metadata.get("toolkit_version", __version__),
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an flock on ``path`` itself; a writer that replaced it meanwhile makes this one lock the new file."""
    fd = lock_current_file(path)
    try:
        yield
    finally:
        os.close(fd)


def _write_registry(path: Path, entries: list[dict[str, Any]]) -> None:
    text = HEADER + (yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=120) if entries else "[]\n")
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def publish(
    run_dir: str | Path,
    *,
    name: str | None = None,
    registry: str | Path | None = None,
    files_dir: str | Path | None = None,
    base_url: str | None = None,
    backbone: str | None = None,
    dataset: str | None = None,
    cards_dir: str | Path | None = None,
    recipe: str | None = None,
) -> CheckpointEntry:
    """Add ``run_dir/best.safetensors`` to the zoo: copy the file, write its card and its registry entry.

    Args:
        run_dir: a training work dir (or the checkpoint file itself).
        name: the entry's name; default the run's recipe name. An existing entry of that name is replaced.
        registry: the registry folder (default: :func:`harma_zoo.hub.index.default_registry`); repo-relative
            paths are relative to its parent, the project root.
        files_dir: where the file is copied (default ``<project root>/zoo_files``).
        base_url: the file's public folder (``https://host/zoo``); the entry's URL is then ``base_url/<file>``,
            else the file's path relative to the project root (or an absolute ``file://`` URL outside it).
        backbone: the backbone entry's name; default: the entry whose config the checkpoint records.
        dataset: the dataset's name; default: from the recipe.
        cards_dir: where the card goes (default ``<project root>/model_cards``).
        recipe: the recipe that reproduces the run (default: the one the checkpoint records; a bench run
            records its composed config, so name the recipe in recipes/ that it equals).
    """
    run_dir = Path(run_dir)
    checkpoint = run_dir if run_dir.is_file() else run_dir / CHECKPOINT_FILE
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{checkpoint} does not exist: publish takes a training work dir holding "
            f"{CHECKPOINT_FILE} (or the checkpoint file)"
        )
    index = load_index(registry)
    root = index.project_root
    name = name or read_metadata(checkpoint).get("recipe") or ""
    if not NAME.fullmatch(name):
        raise ValueError(f"cannot publish as {name!r}: a name is 1-100 letters, digits, '.', '_' or '-' (--name)")
    if name in index.backbones:
        raise ValueError(f"{name!r} is the name of a backbone entry; choose another --name")
    files = Path(files_dir) if files_dir is not None else root / "zoo_files"
    cards = Path(cards_dir) if cards_dir is not None else root / "model_cards"
    digest = sha256_file(checkpoint)
    target = files / f"{name}-{digest[:8]}.safetensors"
    if base_url:
        url = f"{base_url.rstrip('/')}/{target.name}"
    else:
        relative = _relative_or_absolute(target, root)
        url = relative if not Path(relative).is_absolute() else target.resolve().as_uri()
    card_path = cards / f"{name}.md"
    entry = build_entry(
        index,
        checkpoint,
        name=name,
        url=url,
        card=_relative_or_absolute(card_path, root),
        backbone=backbone,
        dataset=dataset,
        run_dir=run_dir if run_dir.is_dir() else None,
        recipe=recipe,
    )
    registry_file = index.root / CHECKPOINTS_FILE

    with _locked(registry_file):
        raw = read_entries(registry_file)  # again, under the lock: another publish may have added one
        old = next((item for item in raw if isinstance(item, dict) and item.get("name") == name), None)
        new_raw = [entry_dict(entry) if item is old else item for item in raw]
        if old is None:
            new_raw.append(entry_dict(entry))
        check_checkpoints(index, new_raw)  # nothing is written unless the whole new file is valid
        copied = not target.is_file() or sha256_file(target) != digest
        if copied:
            atomic_write(target, lambda temporary: shutil.copyfile(checkpoint, temporary))
        old_card = card_path.read_bytes() if card_path.is_file() else None
        try:
            write_card(entry, index.backbone(entry.backbone), card_path)
            _write_registry(registry_file, new_raw)
        except BaseException:
            if old_card is not None:
                atomic_write(card_path, lambda temporary: temporary.write_bytes(old_card))
            else:
                card_path.unlink(missing_ok=True)
            if copied:
                target.unlink(missing_ok=True)
            raise
        _remove_replaced_files(old, root, files, keep=target)
    return entry


def _remove_replaced_files(old: dict[str, Any] | None, root: Path, files: Path, keep: Path) -> None:
    """The replaced entry's repo-relative copies in the files folder, except the file just published."""
    for url in (old or {}).get("urls") or []:
        if "://" in url:
            continue
        path = (root / url).resolve()
        if path.parent == files.resolve() and path != keep.resolve() and path.is_file():
            path.unlink()
