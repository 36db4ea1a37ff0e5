"""The zoo index: backbones and adapter checkpoints, declared as data in ``registry/*.yaml``.

``registry/backbones.yaml`` and ``registry/checkpoints.yaml`` each hold a YAML list of
entries; the fields of an entry are the fields of :class:`BackboneEntry` /
:class:`CheckpointEntry` (see ``registry/README.md``). :func:`load_index` reads both files
and checks every entry against those dataclasses, by hand and without a schema library: a
malformed entry raises :class:`RegistryError` naming the file, the entry and the field.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Union
from urllib.parse import urlsplit

import yaml

from harma_zoo.plaindata import as_json_data
from harma_zoo.resources import project_folder

BACKBONES_FILE = "backbones.yaml"
CHECKPOINTS_FILE = "checkpoints.yaml"
WEIGHT_KINDS = ("random", "tag", "hub", "url", "file")
URL_SCHEMES = ("https", "http", "hf", "file")
# The family option that takes the weights; every other family takes a hub id or path as ``source``.
WEIGHTS_OPTION = {"open_clip": "pretrained"}
# Options of a backbone config that do not change which weights or architecture it is.
NEUTRAL_OPTIONS = ("cache_dir",)
# A backbone config may give its weights as `zoo:NAME`: the weights of backbone entry NAME (resolved
# by harma_zoo.hub.references when the backbone is built), so a recipe names a zoo backbone portably.
ZOO_PREFIX = "zoo:"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SHA256 = re.compile(r"[0-9a-f]{64}")


class RegistryError(ValueError):
    """A registry file or entry is malformed; the message names the file, the entry and the field."""

    def __init__(self, file: str, entry: str | None, field_name: str | None, problem: str) -> None:
        where = [file]
        if entry is not None:
            where.append(f"entry {entry}")
        if field_name is not None:
            where.append(f"field {field_name!r}")
        super().__init__(f"{': '.join(where)} {problem}" if field_name else f"{': '.join(where)}: {problem}")
        self.file, self.entry, self.field, self.problem = file, entry, field_name, problem


@dataclass(frozen=True)
class Weights:
    """Where a backbone's weights come from.

    ``kind``: ``random`` (no weights, ``source`` null), ``tag`` (an OpenCLIP pretrained tag of the
    architecture), ``hub`` (a Hugging Face model id the family loads itself), ``url`` (one file at
    ``https://``, ``http://``, ``hf://OWNER/REPO/path[@revision]`` or ``file://``) or ``file`` (a
    path relative to the project root, e.g. ``zoo_files/x.pt``). ``sha256`` of the file, for
    ``url``/``file`` only; null while unknown.
    """

    kind: str
    source: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class BackboneEntry:
    """A pretrained dual encoder the zoo knows: family, architecture options, weights and provenance."""

    name: str
    family: str
    architecture: dict[str, Any]
    weights: Weights
    license: str
    citation: str
    description: str = ""
    homepage: str | None = None


@dataclass(frozen=True)
class CheckpointEntry:
    """A published adapter checkpoint: what was trained, on what, how it scored, and where it is."""

    name: str
    backbone: str
    method: dict[str, Any]
    loss: dict[str, Any]
    recipe: str
    dataset: dict[str, Any]
    selected_on: str | None
    epoch: int | None
    metrics: dict[str, dict[str, float]]
    parameters: dict[str, Any]
    urls: list[str]
    sha256: str
    size: int
    card: str
    backbone_fingerprint: str
    toolkit_version: str
    description: str = ""


Entry = BackboneEntry | CheckpointEntry


def entry_dict(entry: Entry) -> dict[str, Any]:
    """The entry as plain data, in field order (what the YAML files and ``--json`` hold)."""
    return dataclasses.asdict(entry)


# --- reading ------------------------------------------------------------------------------------
def default_registry() -> Path:
    """``$HARMA_ZOO_REGISTRY``, else the project's ``registry/`` folder (beside or inside the package)."""
    if folder := os.environ.get("HARMA_ZOO_REGISTRY"):
        return Path(folder).expanduser()
    return project_folder("registry")


def display_path(path: Path) -> str:
    """``registry/backbones.yaml`` when under the working folder, else the absolute path."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class ZooIndex:
    """Both registry files, validated. ``root`` is the registry folder; its parent is the project root."""

    root: Path
    backbones: dict[str, BackboneEntry] = field(default_factory=dict)
    checkpoints: dict[str, CheckpointEntry] = field(default_factory=dict)

    @property
    def project_root(self) -> Path:
        """Repo-relative paths (``zoo_files/...``, ``model_cards/...``) are relative to this folder."""
        return self.root.parent

    def backbone(self, name: str) -> BackboneEntry:
        if name not in self.backbones:
            raise KeyError(
                f"no backbone entry {name!r} in {display_path(self.root / BACKBONES_FILE)}; "
                f"known: {', '.join(sorted(self.backbones))}"
            )
        return self.backbones[name]

    def checkpoint(self, name: str) -> CheckpointEntry:
        if name not in self.checkpoints:
            known = ", ".join(sorted(self.checkpoints)) or "none yet"
            raise KeyError(
                f"no checkpoint entry {name!r} in {display_path(self.root / CHECKPOINTS_FILE)}; known: {known}"
            )
        return self.checkpoints[name]

    def entry(self, name: str) -> Entry:
        """A backbone or checkpoint entry by name (names are unique across both files)."""
        if name in self.backbones:
            return self.backbones[name]
        if name in self.checkpoints:
            return self.checkpoints[name]
        raise KeyError(
            f"no zoo entry {name!r}: backbones are {', '.join(sorted(self.backbones))}; "
            f"checkpoints are {', '.join(sorted(self.checkpoints)) or 'none yet'} (registry {display_path(self.root)})"
        )

    def resolve_url(self, url: str) -> str:
        """A URL as ``fetch`` takes it: repo-relative paths become ``file://`` URLs under the project root."""
        if "://" in url:
            return url
        return (self.project_root / url).resolve().as_uri()


def read_entries(path: Path) -> list[Any]:
    """The raw list of entries of one registry file; an empty file is an empty list."""
    file = display_path(path)
    if not path.is_file():
        raise RegistryError(file, None, None, "registry file is missing")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RegistryError(file, None, None, f"not valid YAML ({error})") from error
    if data is None:
        return []
    if not isinstance(data, list):
        raise RegistryError(file, None, None, f"expected a YAML list of entries, found {type(data).__name__}")
    return data


def load_index(folder: str | Path | None = None) -> ZooIndex:
    """Read and check ``backbones.yaml`` and ``checkpoints.yaml`` in ``folder`` (default: :func:`default_registry`)."""
    root = Path(folder) if folder is not None else default_registry()
    index = ZooIndex(root=root)
    backbones_path, checkpoints_path = root / BACKBONES_FILE, root / CHECKPOINTS_FILE
    index.backbones = _parse_file(backbones_path, BackboneEntry, read_entries(backbones_path))
    for entry in index.backbones.values():
        _check_backbone(entry, display_path(backbones_path))
    index.checkpoints = _parse_file(checkpoints_path, CheckpointEntry, read_entries(checkpoints_path))
    for entry in index.checkpoints.values():
        _check_checkpoint(entry, index, display_path(checkpoints_path))
    return index


def check_checkpoints(index: ZooIndex, raw_entries: list[Any]) -> dict[str, CheckpointEntry]:
    """Parse and check a candidate ``checkpoints.yaml`` content against ``index``'s backbones."""
    path = index.root / CHECKPOINTS_FILE
    entries = _parse_file(path, CheckpointEntry, raw_entries)
    for entry in entries.values():
        _check_checkpoint(entry, index, display_path(path))
    return entries


# --- the hand-written schema check ---------------------------------------------------------------
def _parse_file(path: Path, cls: type, raw_entries: list[Any]) -> dict[str, Any]:
    file = display_path(path)
    entries: dict[str, Any] = {}
    for position, raw in enumerate(raw_entries, start=1):
        label = f"#{position}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            label = repr(raw["name"])
        entry = _build(cls, raw, file, label, prefix="")
        if entry.name in entries:
            raise RegistryError(file, label, "name", "is a duplicate: another entry has the same name")
        entries[entry.name] = entry
    return entries


def _build(cls: type, raw: Any, file: str, label: str, prefix: str) -> Any:
    """``cls(**raw)`` after checking each field's presence and type against ``cls``'s annotations."""
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or None
        raise RegistryError(file, label, where, f"must be a mapping, found {_kind(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in raw if key not in fields)
    if unknown:
        raise RegistryError(file, label, prefix + unknown[0], f"is unknown; known fields: {', '.join(fields)}")
    values = {}
    for name, spec in fields.items():
        path = prefix + name
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if name not in raw:
            if required and not _allows_none(hints[name]):
                raise RegistryError(file, label, path, "is missing")
            if required:  # optional values (X | None) without a default still have to be written
                raise RegistryError(file, label, path, "is missing (write null when there is no value)")
            continue
        values[name] = _value(raw[name], hints[name], file, label, path)
    entry = cls(**values)
    if prefix == "" and not NAME.fullmatch(entry.name):
        raise RegistryError(
            file,
            label,
            "name",
            f"must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit; got {entry.name!r}",
        )
    return entry


def _allows_none(hint: Any) -> bool:
    return hint is type(None) or (_is_union(hint) and type(None) in typing.get_args(hint))


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _kind(value: Any) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _value(value: Any, hint: Any, file: str, label: str, path: str) -> Any:
    """``value`` checked against ``hint`` (str, int, float, Any, X | None, dict[str, X], list[X], a dataclass)."""
    if hint is Any:
        return value
    if _is_union(hint):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _value(value, inner, file, label, path)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, file, label, prefix=f"{path}.")
    origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(value, dict):
            raise RegistryError(file, label, path, f"must be a mapping, found {_kind(value)}")
        _, item = typing.get_args(hint)
        for key in value:
            if not isinstance(key, str):
                raise RegistryError(file, label, path, f"must have string keys, found {key!r}")
        return {key: _value(item_value, item, file, label, f"{path}.{key}") for key, item_value in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise RegistryError(file, label, path, f"must be a list, found {_kind(value)}")
        (item,) = typing.get_args(hint)
        return [_value(item_value, item, file, label, f"{path}[{i}]") for i, item_value in enumerate(value)]
    expected = {str: "a string", int: "an integer", float: "a number"}[hint]
    accepted = (int, float) if hint is float else (hint,)
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise RegistryError(file, label, path, f"must be {expected}, found {_kind(value)} ({value!r})")
    return value


def _known_families() -> list[str]:
    from harma_zoo.registry import BACKBONES, registered_names  # imports the families: only when checking one

    return registered_names(BACKBONES)


def weights_option(family: str) -> str:
    """The option of ``family`` that takes the weights (``pretrained`` for OpenCLIP, else ``source``)."""
    return WEIGHTS_OPTION.get(family, "source")


def _check_backbone(entry: BackboneEntry, file: str) -> None:
    label = repr(entry.name)
    families = _known_families()
    if entry.family not in families:
        raise RegistryError(
            file, label, "family", f"names an unknown family {entry.family!r}; registered: {', '.join(families)}"
        )
    if "type" in entry.architecture and entry.architecture["type"] != entry.family:
        raise RegistryError(
            file, label, "architecture.type", f"is {entry.architecture['type']!r} but the family is {entry.family!r}"
        )
    option = weights_option(entry.family)
    if option in entry.architecture:
        raise RegistryError(file, label, f"architecture.{option}", "belongs in field 'weights', not here")
    weights = entry.weights
    if weights.kind not in WEIGHT_KINDS:
        raise RegistryError(
            file, label, "weights.kind", f"must be one of {', '.join(WEIGHT_KINDS)}; got {weights.kind!r}"
        )
    if weights.kind == "random":
        if weights.source is not None:
            raise RegistryError(file, label, "weights.source", "must be null for random weights")
    elif not weights.source:
        raise RegistryError(file, label, "weights.source", f"is missing: a {weights.kind} needs a source")
    if weights.kind == "tag" and entry.family != "open_clip":
        raise RegistryError(file, label, "weights.kind", "'tag' (an OpenCLIP pretrained tag) needs family open_clip")
    if weights.kind == "hub" and entry.family == "open_clip":
        raise RegistryError(
            file, label, "weights.kind", "'hub' needs a family that loads hub ids; for OpenCLIP use a tag or a url"
        )
    if weights.kind == "url":
        problem = _url_problem(weights.source)
        if problem:
            raise RegistryError(file, label, "weights.source", problem)
    if weights.kind == "file":
        problem = _relative_problem(weights.source)
        if problem:
            raise RegistryError(file, label, "weights.source", problem)
    if weights.sha256 is not None:
        if weights.kind not in ("url", "file"):
            raise RegistryError(file, label, "weights.sha256", f"must be null: {weights.kind} weights are no file")
        if not SHA256.fullmatch(weights.sha256):
            raise RegistryError(
                file, label, "weights.sha256", f"must be 64 lowercase hex digits, got {weights.sha256!r}"
            )
    for name in ("license", "citation"):
        if not getattr(entry, name).strip():
            raise RegistryError(file, label, name, "must not be empty (write 'unknown' when it is not known)")


def _url_problem(url: str) -> str | None:
    scheme = urlsplit(url).scheme
    if "://" not in url or scheme not in URL_SCHEMES:
        return f"must be a URL ({', '.join(s + '://' for s in URL_SCHEMES)}), got {url!r}"
    if scheme == "hf":
        rest = url.removeprefix("hf://").partition("@")[0].split("/")
        if len(rest) < 3 or not all(rest):
            return f"must look like hf://OWNER/REPO/path/in/repo[@revision], got {url!r}"
    elif not urlsplit(url).path.rpartition("/")[2]:
        return f"must name a file (its path ends in '/'): {url!r}"
    return None


def _relative_problem(path: str) -> str | None:
    parts = PurePosixPath(path).parts
    if "://" in path or path.startswith(("/", "~")) or ".." in parts or not parts:
        return f"must be a path relative to the project root without '..', got {path!r}"
    return None


def _check_checkpoint(entry: CheckpointEntry, index: ZooIndex, file: str) -> None:
    label = repr(entry.name)
    if entry.name in index.backbones:
        raise RegistryError(file, label, "name", "is also the name of a backbone entry; names must be unique")
    if entry.backbone not in index.backbones:
        raise RegistryError(
            file,
            label,
            "backbone",
            f"names an unknown backbone {entry.backbone!r}; known: {', '.join(sorted(index.backbones))}",
        )
    for section in ("method", "loss"):
        if not isinstance(getattr(entry, section).get("type"), str):
            raise RegistryError(file, label, f"{section}.type", "is missing (the registered name, e.g. 'harma')")
    if not isinstance(entry.dataset.get("name"), str) or not entry.dataset["name"]:
        raise RegistryError(file, label, "dataset.name", "is missing (e.g. 'rsicd')")
    if entry.selected_on == "test":
        raise RegistryError(file, label, "selected_on", "is 'test': checkpoints are never selected on the test split")
    if entry.selected_on is not None and entry.metrics and entry.selected_on not in entry.metrics:
        raise RegistryError(
            file,
            label,
            "selected_on",
            f"is {entry.selected_on!r}, a split without metrics ({', '.join(entry.metrics)})",
        )
    trainable = entry.parameters.get("trainable")
    if isinstance(trainable, bool) or not isinstance(trainable, int) or trainable < 0:
        raise RegistryError(file, label, "parameters.trainable", f"must be a non-negative integer, got {trainable!r}")
    if not entry.urls:
        raise RegistryError(file, label, "urls", "must list at least one URL or repo-relative path")
    for position, url in enumerate(entry.urls):
        problem = _url_problem(url) if "://" in url else _relative_problem(url)
        if problem:
            raise RegistryError(file, label, f"urls[{position}]", problem)
    if not SHA256.fullmatch(entry.sha256):
        raise RegistryError(file, label, "sha256", f"must be 64 lowercase hex digits, got {entry.sha256!r}")
    if entry.size < 0:
        raise RegistryError(file, label, "size", f"must be >= 0, got {entry.size}")


# --- backbone configs ---------------------------------------------------------------------------
def url_filename(url: str) -> str:
    """The file name a URL or repo-relative path ends in (an ``hf://`` revision is dropped)."""
    path = url.removeprefix("hf://").partition("@")[0] if url.startswith("hf://") else urlsplit(url).path or url
    return PurePosixPath(path).name


def backbone_config(entry: BackboneEntry, weights_path: str | Path | None = None) -> dict[str, Any]:
    """The family config (``build_backbone`` input) of ``entry``.

    ``url``/``file`` weights are one file that has to be fetched first: pass its local path.
    """
    config = {"type": entry.family, **{k: v for k, v in entry.architecture.items() if k != "type"}}
    option, kind = weights_option(entry.family), entry.weights.kind
    if kind in ("tag", "hub"):
        config[option] = entry.weights.source
    elif kind in ("url", "file"):
        if weights_path is None:
            raise ValueError(
                f"backbone {entry.name!r} needs its weights file: run `harma-zoo fetch {entry.name}` "
                "and pass the local path"
            )
        config[option] = str(weights_path)
    return config


def backbone_matches(entry: BackboneEntry, config: dict[str, Any]) -> bool:
    """Whether a family config (as a checkpoint records it) is ``entry``'s architecture with its weights.

    A weights file matches by file name (the same file lives in different folders on each machine).
    """
    config = as_json_data(config)
    if config.get("type") != entry.family:
        return False
    architecture = as_json_data({k: v for k, v in entry.architecture.items() if k != "type"})
    option = weights_option(entry.family)
    if set(config) - {"type", option, *architecture, *NEUTRAL_OPTIONS}:
        return False
    if any(config.get(key) != value for key, value in architecture.items()):
        return False
    weights, value = entry.weights, config.get(option)
    if value == f"{ZOO_PREFIX}{entry.name}":
        return True
    if weights.kind == "random":
        return value is None
    if weights.kind in ("tag", "hub"):
        return value == weights.source
    return isinstance(value, str) and PurePosixPath(value.replace("\\", "/")).name == url_filename(weights.source)


def match_backbone(index: ZooIndex, config: dict[str, Any]) -> BackboneEntry | None:
    """The one backbone entry ``config`` is; None when there is none; ValueError when several fit."""
    found = [entry for entry in index.backbones.values() if backbone_matches(entry, config)]
    if len(found) > 1:
        raise ValueError(
            f"backbone config {config} fits several entries ({', '.join(e.name for e in found)}): "
            "name one with --backbone"
        )
    return found[0] if found else None
