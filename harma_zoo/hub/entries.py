"""Getting a zoo entry's weights into the cache: a checkpoint's adapter, or a backbone's weights.

A backbone whose weights are one file (``url``, ``file``) is downloaded into the zoo's cache,
verified against the registry's sha256. Weights that are an OpenCLIP tag or a Hugging Face model
id are no single file: the family's loader downloads them into its own cache, so
:func:`fetch_entry` builds the backbone once to have it do so; later builds find them there,
offline too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harma_zoo.hub.download import ChecksumError, FetchError, WeightsUnavailable, fetch, sha256_file
from harma_zoo.hub.index import BackboneEntry, ZooIndex, family_class, family_config, url_filename


@dataclass
class Fetched:
    """What ``fetch_entry`` obtained (``path``) or, for weights that are no file, what will obtain them."""

    name: str
    kind: str  # "backbone" or "checkpoint"
    path: Path | None = None
    sha256: str | None = None  # of the file in the cache
    verified: bool = False  # checked against the registry's sha256
    url: str | None = None  # where it came from
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None  # for a backbone: the family config that uses these weights


def loader_note(entry: BackboneEntry) -> str:
    """Where the weights of ``entry`` that are no single file come from, in the family's words."""
    if entry.weights.kind == "random":
        return f"{entry.name}: random weights (architecture {entry.architecture}); nothing to fetch."
    return f"{entry.name}: {family_class(entry.family).loader_note(entry.weights.source, entry.architecture)}."


def _fetch_with_loader(entry: BackboneEntry) -> None:
    """Build the backbone once, so that its family's loader downloads the weights into its own cache."""
    options = {key: value for key, value in family_config(entry).items() if key != "type"}
    try:
        family_class(entry.family)(**options)
    except WeightsUnavailable as error:
        raise WeightsUnavailable(f"{entry.name}: {error}") from None


def _fetch_first(urls: list[str], sha256: str | None, **options: Any) -> tuple[Path, str]:
    """The first URL that yields the file; a wrong hash at one mirror does not stop the next."""
    errors: list[Exception] = []
    for url in urls:
        try:
            return fetch(url, sha256, filename=url_filename(url), **options), url
        except (FetchError, ChecksumError) as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    message = "; ".join(str(error) for error in errors)
    raise (ChecksumError if any(isinstance(e, ChecksumError) for e in errors) else FetchError)(message)


def fetch_entry(
    index: ZooIndex, name: str, *, cache_dir: str | Path | None = None, progress: bool = True, **options: Any
) -> Fetched:
    """Fetch the file of the backbone or checkpoint entry ``name`` into the cache, verified by its sha256.

    Repo-relative paths are copied from the project root (``file://``). Weights that are a tag or a
    hub id are downloaded by the family's loader into its own cache (``path`` stays None). Raises
    ``KeyError`` for an unknown name, :class:`ChecksumError` (naming both hashes) for wrong bytes,
    :class:`FetchError` when no source gives the file, :class:`WeightsUnavailable` when the family's
    loader cannot download its weights. A checkpoint's download is bounded by the size its entry
    states. ``options`` (``force``, ``timeout`` ...) go to :func:`harma_zoo.hub.download.fetch`.
    """
    entry = index.entry(name)
    options = {"cache_dir": cache_dir, "progress": progress, **options}
    if isinstance(entry, BackboneEntry):
        result = Fetched(name=name, kind="backbone")
        if entry.weights.kind not in ("url", "file"):
            if entry.weights.kind != "random":
                _fetch_with_loader(entry)
            result.notes.append(loader_note(entry))
            result.config = family_config(entry)
            return result
        expected, size = entry.weights.sha256, None
        urls = [index.resolve_url(entry.weights.source)]
    else:
        result = Fetched(name=name, kind="checkpoint")
        expected, size = entry.sha256, entry.size
        urls = [index.resolve_url(url) for url in entry.urls]
    result.path, result.url = _fetch_first(urls, expected, size=size, **options)
    result.sha256 = expected or sha256_file(result.path)
    result.verified = expected is not None
    if isinstance(entry, BackboneEntry):
        result.config = family_config(entry, result.path)
        if expected is None:
            result.notes.append(
                f"{name}: the registry has no sha256 for this file, so it was not verified; the sha256 of its "
                f"first download, {result.sha256}, is recorded beside it and later fetches are checked against "
                "it (check it, then record it in the registry)"
            )
    else:
        backbone = index.backbone(entry.backbone)
        if backbone.weights.kind == "random":
            how = "its weights are random, nothing to fetch"
        else:
            how = f"`harma-zoo fetch {backbone.name}` gets its weights"
        result.notes.append(f"{name}: adapter for backbone {backbone.name!r}; {how}")
    return result
