"""Getting a zoo entry's file into the cache: a checkpoint's adapter, or a backbone's weights file.

Backbones whose weights are an OpenCLIP tag or a Hugging Face model id are no single file: their
family loader downloads them itself when the backbone is built, and :func:`fetch_entry` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harma_zoo.hub.download import ChecksumError, FetchError, fetch, sha256_file
from harma_zoo.hub.index import BackboneEntry, ZooIndex, backbone_config, url_filename


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
    """What the family does with weights that are no single file."""
    source = entry.weights.source
    if entry.weights.kind == "tag":
        return (
            f"{entry.name}: OpenCLIP pretrained tag {source!r} of {entry.architecture.get('arch')}; no single "
            "file to fetch. OpenCLIP downloads and caches the weights itself (its cache_dir option, else the "
            "Hugging Face cache) when the backbone is built."
        )
    if entry.weights.kind == "hub":
        return (
            f"{entry.name}: Hugging Face model id {source!r}; no single file to fetch. The {entry.family} family "
            "loads it with transformers' from_pretrained, which downloads into the Hugging Face cache "
            "($HF_HOME) when the backbone is built."
        )
    return f"{entry.name}: random weights (architecture {entry.architecture}); nothing to fetch."


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

    Repo-relative paths are copied from the project root (``file://``). Raises ``KeyError`` for an
    unknown name, :class:`ChecksumError` (naming both hashes) for wrong bytes, :class:`FetchError`
    when no source gives the file. ``options`` go to :func:`harma_zoo.hub.download.fetch`.
    """
    entry = index.entry(name)
    options = {"cache_dir": cache_dir, "progress": progress, **options}
    if isinstance(entry, BackboneEntry):
        result = Fetched(name=name, kind="backbone")
        if entry.weights.kind not in ("url", "file"):
            result.notes.append(loader_note(entry))
            result.config = backbone_config(entry)
            return result
        expected = entry.weights.sha256
        urls = [index.resolve_url(entry.weights.source)]
    else:
        result = Fetched(name=name, kind="checkpoint")
        expected = entry.sha256
        urls = [index.resolve_url(url) for url in entry.urls]
    result.path, result.url = _fetch_first(urls, expected, **options)
    result.sha256 = expected or sha256_file(result.path)
    result.verified = expected is not None
    if isinstance(entry, BackboneEntry):
        result.config = backbone_config(entry, result.path)
        if expected is None:
            result.notes.append(
                f"{name}: the registry has no sha256 for this file, so it was not verified; its "
                f"sha256 is {result.sha256} (check it, then record it in the registry)"
            )
    else:
        backbone = index.backbone(entry.backbone)
        if backbone.weights.kind in ("url", "file"):
            how = f"`harma-zoo fetch {backbone.name}` gets its weights file"
        else:
            how = loader_note(backbone).partition(": ")[2]
        result.notes.append(f"{name}: adapter for backbone {backbone.name!r}; {how}")
    return result
