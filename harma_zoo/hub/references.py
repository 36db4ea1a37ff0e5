"""``zoo:NAME`` as a backbone's weights: the registry entry NAME's weights, from the cache or a local folder.

Why: a recipe that starts from a backbone of the zoo then reads the same on every machine, and a
weights file is checked against the registry's sha256 before it is used, instead of trusting
whatever sits at a local path. What ``harma-zoo fetch NAME`` puts in the cache is what a build reads:

- ``url``/``file`` weights (one file): ``$HARMA_ZOO_WEIGHTS/<file name>`` when that file exists (checked
  against the registry's sha256 when it has one: a file with another hash is refused, never used;
  without one it is used and its hash logged), else the zoo cache, downloading into it when needed.
- ``tag``/``hub`` weights (an OpenCLIP tag, a Hugging Face model id): given to the family, whose loader
  reads its own cache (the Hugging Face cache), downloading into it when needed.
- ``random`` weights: none.

Weights that are in no cache and cannot be downloaded (offline, say) raise ``WeightsUnavailable`` with
one line naming the entry and the ways to provide them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harma_zoo.hub.download import (
    ChecksumError,
    FetchError,
    WeightsUnavailable,
    sha256_file,
    unreachable_reason,
    zoo_home,
)
from harma_zoo.hub.entries import fetch_entry
from harma_zoo.hub.index import (
    ZOO_PREFIX,
    BackboneEntry,
    ZooIndex,
    backbone_matches,
    load_index,
    url_filename,
    weights_option,
)

WEIGHTS_FOLDER = "HARMA_ZOO_WEIGHTS"  # environment variable: a folder of local weights files, by file name

logger = logging.getLogger(__name__)


def zoo_reference(config: Mapping[str, Any]) -> str | None:
    """The entry name when ``config``'s weights option is ``zoo:NAME``, else None (also without a ``type``)."""
    family = config.get("type")
    if not isinstance(family, str):
        return None
    value = config.get(weights_option(family))
    if isinstance(value, str) and value.startswith(ZOO_PREFIX):
        return value.removeprefix(ZOO_PREFIX)
    return None


def zoo_config(entry: BackboneEntry) -> dict[str, Any]:
    """The family config of ``entry`` with its weights as ``zoo:NAME`` (none for random weights)."""
    config = {"type": entry.family, **{key: value for key, value in entry.architecture.items() if key != "type"}}
    if entry.weights.kind != "random":
        config[weights_option(entry.family)] = f"{ZOO_PREFIX}{entry.name}"
    return config


def has_weights(config: Mapping[str, Any], index: ZooIndex | None = None) -> bool:
    """Whether ``config`` gives its backbone weights (``zoo:NAME`` of an entry with random weights does not)."""
    name = zoo_reference(config)
    if name is not None:
        return (index or load_index()).backbone(name).weights.kind != "random"
    family = config.get("type")
    return isinstance(family, str) and config.get(weights_option(family)) is not None


def resolve_zoo_weights(
    config: Mapping[str, Any], *, index: ZooIndex | None = None, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """``config`` with ``zoo:NAME`` weights replaced by what the family loads: a local file, a tag or a hub id.

    The entry must be of the config's family and architecture: a ``zoo:`` name never silently
    loads weights into another model. ``index`` defaults to the registry of :func:`load_index`,
    ``cache_dir`` to the zoo's download cache.
    """
    name = zoo_reference(config)
    if name is None:
        return dict(config)
    index = index or load_index()
    entry = _matching_entry(index, name, config)
    return {**config, weights_option(entry.family): _entry_weights(index, entry, cache_dir)}


@contextmanager
def zoo_weights(
    config: Mapping[str, Any], *, index: ZooIndex | None = None, cache_dir: str | Path | None = None
) -> Iterator[dict[str, Any]]:
    """``config`` resolved as :func:`resolve_zoo_weights` does, for building a backbone inside the block.

    A ``WeightsUnavailable`` raised inside (a tag or hub id the family's loader can neither find nor
    download) becomes one line naming the zoo entry and the ways to provide its weights.
    """
    name = zoo_reference(config)
    index = index or (load_index() if name is not None else None)
    resolved = resolve_zoo_weights(config, index=index, cache_dir=cache_dir)
    try:
        yield resolved
    except WeightsUnavailable as error:
        if name is None:
            raise
        raise missing_weights(index.backbone(name), str(error)) from None


def local_weights_file(entry: BackboneEntry) -> Path | None:
    """``$HARMA_ZOO_WEIGHTS/<file name>`` of a one-file entry when it exists, checked against the registry.

    Raises ``ChecksumError`` when the registry has a sha256 and the file has another one.
    """
    folder = os.environ.get(WEIGHTS_FOLDER)
    if not folder or entry.weights.kind not in ("url", "file"):
        return None
    path = Path(folder).expanduser() / url_filename(entry.weights.source)
    if not path.is_file():
        return None
    expected, got = entry.weights.sha256, sha256_file(path)
    if expected is None:
        logger.warning(
            "%s: using %s from $%s unverified: the registry has no sha256 for it (the file's is %s)",
            entry.name, path, WEIGHTS_FOLDER, got,
        )  # fmt: skip
    elif got != expected:
        raise ChecksumError(
            f"{path} (in ${WEIGHTS_FOLDER}) is not the weights file of zoo backbone {entry.name!r}: its sha256 is "
            f"{got}, the registry's {expected}; replace or remove the file, or unset ${WEIGHTS_FOLDER}"
        )
    return path


def missing_weights(entry: BackboneEntry, reason: str) -> WeightsUnavailable:
    """One line: whose weights are missing, why, and the ways to provide them."""
    option = weights_option(entry.family)
    fetch = f"`harma-zoo fetch {entry.name}` on a machine with network access"
    if entry.weights.kind in ("url", "file"):
        filename = url_filename(entry.weights.source)
        ways = (
            f"put {filename} in a folder and name it in ${WEIGHTS_FOLDER}, set the backbone's {option} to the "
            f"file's path, or run {fetch} and copy its cache ({zoo_home()}) here"
        )
    else:
        ways = (
            f"run {fetch} and copy its Hugging Face cache ($HF_HOME) here, or set the backbone's {option} "
            "to a local copy of the weights"
        )
    return WeightsUnavailable(f"zoo backbone {entry.name!r}: {reason.rstrip('.')}. To provide them: {ways}")


def _matching_entry(index: ZooIndex, name: str, config: Mapping[str, Any]) -> BackboneEntry:
    entry = index.backbone(name)
    if not backbone_matches(entry, dict(config)):
        raise ValueError(
            f"backbone config {dict(config)} names weights {ZOO_PREFIX}{name}, but zoo entry {name!r} is "
            f"family {entry.family!r} with architecture {entry.architecture}; use the entry's family and architecture"
        )
    return entry


def _entry_weights(index: ZooIndex, entry: BackboneEntry, cache_dir: str | Path | None) -> str | None:
    """What the family loads for ``entry``'s weights: a local file, a tag, a hub id, or None (random)."""
    if entry.weights.kind == "random":
        return None
    if entry.weights.kind in ("tag", "hub"):
        return entry.weights.source
    local = local_weights_file(entry)
    if local is not None:
        return str(local)
    try:
        return str(fetch_entry(index, entry.name, cache_dir=cache_dir, progress=False).path)
    except FetchError as error:
        cause = error.__cause__ if entry.weights.source.startswith("hf://") else None
        why = unreachable_reason(cause) if cause is not None else str(error).strip().splitlines()[0]
        filename = url_filename(entry.weights.source)
        raise missing_weights(entry, f"its weights file {filename} is not in the zoo cache and cannot be "
                                     f"downloaded now: {why}") from None  # fmt: skip
