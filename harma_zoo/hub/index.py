"""The zoo index: backbones and adapter checkpoints, declared as data in ``registry/*.yaml``.

``registry/backbones.yaml`` and ``registry/checkpoints.yaml`` each hold a YAML list of
entries; the fields of an entry are the fields of the pydantic models :class:`BackboneEntry` /
:class:`CheckpointEntry` (see ``registry/README.md``; their JSON schema, for editors, is
``registry/schema/``). :func:`load_index` reads both files and validates every entry against
those models, then checks what one entry cannot say alone (its family is registered, its
backbone exists): a malformed entry raises :class:`RegistryError` naming the file, the entry
and the field.
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    with_config,
)
from typing_extensions import NotRequired, TypedDict  # pydantic needs typing_extensions' TypedDict before 3.12

from harma_zoo.hub.download import SHA256_PATTERN
from harma_zoo.plaindata import as_json_data
from harma_zoo.registry import BACKBONES, get_class, registered_names
from harma_zoo.resources import project_folder

BACKBONES_FILE = "backbones.yaml"
CHECKPOINTS_FILE = "checkpoints.yaml"
WeightKind = Literal["random", "tag", "hub", "url", "file"]
URL_SCHEMES = ("https", "http", "hf", "file")
# Options of a backbone config that do not change which weights or architecture it is.
NEUTRAL_OPTIONS = ("cache_dir",)
# A backbone config may give its weights as `zoo:NAME`: the weights of backbone entry NAME (resolved
# by harma_zoo.hub.references when the backbone is built), so a recipe names a zoo backbone portably.
ZOO_PREFIX = "zoo:"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
TEXT_PATTERN = r"\S"
NAME = re.compile(NAME_PATTERN)
# What a value that misses each pattern is told (pydantic would only quote the pattern).
PATTERN_PROBLEMS = {
    NAME_PATTERN: "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit; got {value!r}",
    SHA256_PATTERN: "must be 64 lowercase hex digits; got {value!r}",
    TEXT_PATTERN: "must not be empty (write 'unknown' when it is not known)",
}


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


# --- the entries, as pydantic models --------------------------------------------------------------
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


def _location(url: str) -> str:
    """A URL, or a path relative to the project root."""
    problem = _url_problem(url) if "://" in url else _relative_problem(url)
    if problem:
        raise ValueError(problem)
    return url


Name = Annotated[str, Field(pattern=NAME_PATTERN, description="1-100 letters, digits, '.', '_' or '-'")]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN, description="sha256 of the file: 64 lowercase hex digits")]
Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
Location = Annotated[
    str,
    AfterValidator(_location),
    Field(description="https://, http://, hf://OWNER/REPO/path[@revision], file:// or a repo-relative path"),
]
NonNegative = Annotated[int, Field(ge=0)]
_DATA = ConfigDict(strict=True, extra="forbid", frozen=True)  # a bool is no integer, a number no string
_OPEN_MAPPING = ConfigDict(strict=True, extra="allow")  # these keys checked, any others kept as they are


class Weights(BaseModel):
    """Where a backbone's weights come from.

    ``kind``: ``random`` (no weights, ``source`` null), ``tag`` (an OpenCLIP pretrained tag of the
    architecture), ``hub`` (a Hugging Face model id the family loads itself), ``url`` (one file at
    ``https://``, ``http://``, ``hf://OWNER/REPO/path[@revision]`` or ``file://``) or ``file`` (a
    path relative to the project root, e.g. ``zoo_files/x.pt``). ``sha256`` of the file, for
    ``url``/``file`` only; null while unknown.
    """

    model_config = _DATA

    kind: WeightKind
    source: str | None = Field(None, validate_default=True, description="tag, hub id, URL or path; null for random")
    sha256: Sha256 | None = Field(None, validate_default=True, description="url/file only; null while unknown")

    @field_validator("source")
    @classmethod
    def _source_fits_kind(cls, source: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")  # absent when the kind itself is wrong, which is the error reported
        if kind == "random" and source is not None:
            raise ValueError("must be null for random weights")
        if kind not in (None, "random") and not source:
            raise ValueError(f"is missing: a {kind} needs a source")
        problem = _url_problem(source) if kind == "url" else _relative_problem(source) if kind == "file" else None
        if problem:
            raise ValueError(problem)
        return source

    @field_validator("sha256")
    @classmethod
    def _only_of_a_file(cls, sha256: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if sha256 is not None and kind not in (None, "url", "file"):
            raise ValueError(f"must be null: {kind} weights are no file")
        return sha256


class BackboneEntry(BaseModel):
    """A pretrained dual encoder the zoo knows: family, architecture options, weights and provenance."""

    model_config = _DATA

    name: Name
    family: str = Field(description="a registered backbone family: open_clip, hf_clip, hf_siglip, hf_blip, ...")
    architecture: dict[str, Any] = Field(description="the family's options besides the weights; may repeat type")
    weights: Weights
    license: Text = Field(description="licence id (mit, apache-2.0, ...) or 'unknown'")
    citation: Text = Field(description="BibTeX, or a short citation")
    description: str = ""
    homepage: str | None = None


@with_config(_OPEN_MAPPING)
class Component(TypedDict):
    """A method or loss config: its registered ``type`` and its options."""

    type: Annotated[str, Field(description="the registered name, e.g. 'harma'")]


@with_config(_OPEN_MAPPING)
class DatasetRecord(TypedDict):
    """The dataset's ``name`` and what the run recorded of it (reader, split files, sizes)."""

    name: Annotated[str, Field(min_length=1, description="e.g. 'rsicd'")]


@with_config(_OPEN_MAPPING)
class ParameterCounts(TypedDict):
    """``trainable``: numel of the stored tensors; ``groups``: the same per group of tensors."""

    trainable: NonNegative
    groups: NotRequired[dict[str, NonNegative]]


class CheckpointEntry(BaseModel):
    """A published adapter checkpoint: what was trained, on what, how it scored, and where it is."""

    model_config = _DATA

    name: Name
    backbone: str = Field(description="the backbones.yaml entry it was trained on")
    method: Component
    loss: Component
    recipe: str
    dataset: DatasetRecord
    selected_on: str | None = Field(description="the split the checkpoint was selected on, never 'test'")
    epoch: int | None
    metrics: dict[str, dict[str, float]] = Field(description="{split: {metric: value}}, recall in percent")
    parameters: ParameterCounts
    urls: list[Location] = Field(min_length=1, description="where the file is, tried in order")
    sha256: Sha256
    size: NonNegative
    card: str
    backbone_fingerprint: str
    toolkit_version: str
    description: str = ""

    @field_validator("selected_on")
    @classmethod
    def _never_test(cls, split: str | None) -> str | None:
        if split == "test":
            raise ValueError("is 'test': checkpoints are never selected on the test split")
        return split


Entry = BackboneEntry | CheckpointEntry


def entry_dict(entry: Entry) -> dict[str, Any]:
    """The entry as plain data, in field order (what the YAML files and ``--json`` hold)."""
    return entry.model_dump()


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
    except UnicodeDecodeError as error:
        raise RegistryError(file, None, None, f"not UTF-8 text (byte {error.start}: {error.reason})") from None
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


# --- validation messages ---------------------------------------------------------------------------
_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
}


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer"}
    return {**names, float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _field_path(loc: tuple[int | str, ...]) -> str | None:
    """``weights.kind``, ``urls[1]``, ``metrics.val.mR``: a pydantic location as the registry's field name."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or None


def _model_at(cls: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model a location leads into through model fields (``weights`` -> Weights), else None."""
    model: type[BaseModel] | None = cls
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        options = (annotation, *typing.get_args(annotation))
        model = next((t for t in options if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return model


def _problem(cls: type[BaseModel], error: dict[str, Any]) -> tuple[str | None, str]:
    """(field, what is wrong with it) of one pydantic error, in the registry's words."""
    loc, kind, value, context = error["loc"], error["type"], error["input"], error.get("ctx") or {}
    if loc and loc[-1] == "[key]":  # a mapping's key; pydantic adds the key and this marker to the location
        return _field_path(loc[:-2]), f"must have string keys, found {value!r}"
    where = _field_path(loc)
    if kind == "missing":
        owner = _model_at(cls, loc[:-1])
        annotation = owner.model_fields[loc[-1]].annotation if owner and loc[-1] in owner.model_fields else None
        nullable = type(None) in typing.get_args(annotation)  # optional values without a default are still written
        return where, "is missing (write null when there is no value)" if nullable else "is missing"
    if kind == "extra_forbidden":
        owner = _model_at(cls, loc[:-1])
        return where, f"is unknown; known fields: {', '.join(owner.model_fields if owner else ())}"
    if kind in _TYPE_NAMES:
        shown = "" if isinstance(value, (dict, list)) else f" ({value!r})"
        return where, f"must be {_TYPE_NAMES[kind]}, found {_kind(value)}{shown}"
    if kind == "literal_error":
        return where, f"must be one of {context['expected']}; got {value!r}"
    if kind == "string_pattern_mismatch":
        return where, PATTERN_PROBLEMS[context["pattern"]].format(value=value)
    if kind == "string_too_short":
        return where, "must not be empty"
    if kind == "too_short":
        return where, "must list at least one item, found none"
    if kind == "greater_than_equal" and context["ge"] == 0:
        return where, f"must be a non-negative integer, got {value!r}"
    if kind == "value_error":  # the models' own validators word their messages for this sentence
        return where, str(context["error"])
    return where, f"is invalid: {error['msg']}"


def _parse_file(path: Path, cls: type[BaseModel], raw_entries: list[Any]) -> dict[str, Any]:
    file = display_path(path)
    entries: dict[str, Any] = {}
    for position, raw in enumerate(raw_entries, start=1):
        label = f"#{position}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            label = repr(raw["name"])
        try:
            entry = cls.model_validate(raw)
        except ValidationError as invalid:
            # an unknown field first: a misspelt one is also reported missing, and the spelling is the news
            first = sorted(invalid.errors(), key=lambda error: error["type"] != "extra_forbidden")[0]
            raise RegistryError(file, label, *_problem(cls, first)) from invalid
        if entry.name in entries:
            raise RegistryError(file, label, "name", "is a duplicate: another entry has the same name")
        entries[entry.name] = entry
    return entries


def family_class(family: str) -> type:
    """The class registered as ``family`` (importing the families on first use); KeyError lists the known ones.

    Reached through the registry, not imported: the hub sits below the model layer.
    """
    return get_class(BACKBONES, family)


def weights_option(family: str) -> str:
    """The option of ``family`` that takes the weights (``pretrained`` for OpenCLIP, ``source`` for the others)."""
    return family_class(family).weights_option


def _check_backbone(entry: BackboneEntry, file: str) -> None:
    """What the model cannot check alone: the family is registered, and the entry fits it."""
    label = repr(entry.name)
    families = registered_names(BACKBONES)
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
    kinds = family_class(entry.family).weights_kinds
    if entry.weights.kind not in kinds:
        loads = ", ".join(kinds)
        raise RegistryError(
            file, label, "weights.kind", f"is {entry.weights.kind!r}: family {entry.family} loads {loads}"
        )


def _check_checkpoint(entry: CheckpointEntry, index: ZooIndex, file: str) -> None:
    """What the model cannot check alone: names are unique across both files, the backbone exists."""
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
    if entry.selected_on is not None and entry.metrics and entry.selected_on not in entry.metrics:
        raise RegistryError(
            file,
            label,
            "selected_on",
            f"is {entry.selected_on!r}, a split without metrics ({', '.join(entry.metrics)})",
        )


# --- backbone configs ---------------------------------------------------------------------------
def url_filename(url: str) -> str:
    """The file name a URL or repo-relative path ends in (an ``hf://`` revision is dropped)."""
    path = url.removeprefix("hf://").partition("@")[0] if url.startswith("hf://") else urlsplit(url).path or url
    return PurePosixPath(path).name


def family_config(entry: BackboneEntry, weights_path: str | Path | None = None) -> dict[str, Any]:
    """The family config (``build_backbone`` input) of ``entry``, its weights given as the family loads them.

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
