"""Publishing a trained adapter: its file, its ``registry/checkpoints.yaml`` entry and its model card.

Everything the entry says is read from the checkpoint itself (``read_metadata``) and its tensors;
nothing is typed in twice. The file is stored as ``<name>-<sha256[:8]>.safetensors`` (OpenMMLab
style), so a re-published checkpoint never overwrites the file the registry still points to; the
registry is rewritten atomically under a lock, and re-publishing a name replaces its entry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
from harma_zoo.engine.recipe import dataset_name, load_recipe
from harma_zoo.fileio import atomic_write, lock_current_file, set_usual_permissions
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
from harma_zoo.model import resolved_method
from harma_zoo.plaindata import as_json_data
from harma_zoo.resources import project_recipe
from harma_zoo.zoo.cards import write_card

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


def _ordered(metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics in reading order: R@1/5/10 image-to-text, then text-to-image, then mR, then any others."""
    rank = {key: position for position, key in enumerate(METRIC_KEYS)}
    keys = sorted(metrics, key=lambda key: (rank.get(key, len(rank)), key))
    return {key: float(metrics[key]) for key in keys}


def infer_dataset(metadata: dict[str, Any], recipe: str, shown_as: Path) -> str:
    """The dataset's name: as the checkpoint records it, else from the recipe of that name in ``recipes/``.

    Nothing from the run folder or the checkpoint's header is ever run: a recipe is Python, and a header
    may name any file. Only a recipe of the project's own ``recipes/`` folder, named as a plain name, is read.
    """
    recorded = (metadata.get("dataset") or {}).get("name")
    if isinstance(recorded, str) and recorded:
        return recorded
    with suppress(FileNotFoundError):
        return dataset_name(load_recipe(project_recipe(recipe)).data.to_dict())
    raise ValueError(
        f"cannot tell the dataset of {shown_as}: the checkpoint records none and {recipe!r} is no recipe "
        "in recipes/; pass --dataset NAME"
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
    recipe: str | None = None,
    shown_as: Path | None = None,
) -> CheckpointEntry:
    """The registry entry of an adapter checkpoint file, from its metadata and tensors.

    Every fact comes from ``checkpoint`` itself (publish passes its own copy, so that a file replaced
    meanwhile cannot be described in part); messages name it as ``shown_as``.
    """
    shown_as = shown_as or checkpoint
    metadata = read_metadata(checkpoint)
    config = metadata["backbone"]
    if backbone is not None:
        backbone_entry = index.backbone(backbone)
        if not backbone_matches(backbone_entry, config):
            raise ValueError(
                f"{shown_as} was trained on backbone {config}, which is not entry {backbone!r} "
                f"({backbone_entry.family}, {backbone_entry.architecture}, {backbone_entry.weights})"
            )
    else:
        backbone_entry = match_backbone(index, config)
        if backbone_entry is None:
            raise ValueError(
                f"{shown_as}: no entry in {display_path(index.root / 'backbones.yaml')} is the "
                f"backbone {config}; add one (or name one with --backbone)"
            )
    extra = metadata.get("extra") or {}
    recorded = dict(metadata.get("dataset") or {})
    selected_on = extra.get("selected_on", recorded.pop("selected_on", None))
    recorded.pop("selected_on", None)
    recorded.pop("name", None)
    if selected_on == "test":
        raise ValueError(f"{shown_as} was selected on the test split; the zoo publishes no such checkpoint")
    recipe = recipe or metadata.get("recipe") or ""
    if dataset is None:
        dataset = infer_dataset(metadata, recipe, shown_as)
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
def _staged_copy(checkpoint: Path, folder: Path) -> Iterator[Path]:
    """A copy of ``checkpoint`` in ``folder`` (read once), removed on the way out unless it was renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{checkpoint.name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        shutil.copyfile(checkpoint, temporary)
        yield Path(temporary)
    finally:
        Path(temporary).unlink(missing_ok=True)


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
        dataset: the dataset's name; default: as the checkpoint records it, else from its recipe in recipes/.
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
    files = Path(files_dir) if files_dir is not None else root / "zoo_files"
    cards = Path(cards_dir) if cards_dir is not None else root / "model_cards"
    # The checkpoint is read once, into a copy beside its final place; the entry describes that copy and the
    # copy is what gets renamed into place, so the registry's sha256 is the published file's even when a
    # run still training replaces the original meanwhile.
    with _staged_copy(checkpoint, files) as copy:
        name = name or read_metadata(copy).get("recipe") or ""
        if not NAME.fullmatch(name):
            raise ValueError(f"cannot publish as {name!r}: a name is 1-100 letters, digits, '.', '_' or '-' (--name)")
        if name in index.backbones:
            raise ValueError(f"{name!r} is the name of a backbone entry; choose another --name")
        digest = sha256_file(copy)
        target = files / f"{name}-{digest[:8]}.safetensors"
        if base_url:
            url = f"{base_url.rstrip('/')}/{target.name}"
        else:
            relative = _relative_or_absolute(target, root)
            url = relative if not Path(relative).is_absolute() else target.resolve().as_uri()
        card_path = cards / f"{name}.md"
        entry = build_entry(
            index,
            copy,
            name=name,
            url=url,
            card=_relative_or_absolute(card_path, root),
            backbone=backbone,
            dataset=dataset,
            recipe=recipe,
            shown_as=checkpoint,
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
                set_usual_permissions(copy)
                os.replace(copy, target)
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
