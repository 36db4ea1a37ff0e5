"""What a recipe may say: its sections, their keys and the type of each value, declared in one place.

Why: an option nobody reads is worse than an error. A typo (``schedule.epoch=1``) or a key harma-zoo does
not use (``load_from=X``) used to be carried along in silence, and the run did something else than asked.
So every key is declared: ``schedule`` and ``data`` here, as dataclasses; the options of ``backbone``,
``method``, ``loss``, ``data.reader`` and ``data.synthetic`` by the code they configure (a family's, a
loss's or a reader's keyword arguments, a method's ``Options`` dataclass). Anything else is refused with
the nearest known key, and every value is checked against its declared type, naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from harma_zoo.data.images import DEFAULT_MAX_IMAGE_PIXELS
from harma_zoo.data.readers import reader_spec
from harma_zoo.data.synthetic import write_synthetic_dataset
from harma_zoo.registry import BACKBONES, LOSSES, METHODS, READERS, get_class

# Top-level names starting with "_" are a recipe file's own helper variables (e.g. a list of classes used in
# two places); harma-zoo reads none of them.
PRIVATE_PREFIX = "_"
MMENGINE_KEYS = ("_base_", "_delete_", "_scope_")  # mmengine's own; left over in a recipe they mean nothing
_UNIONS = (Union, types.UnionType)  # typing.Optional[X] and X | None
_AT_LEAST_0 = {"min": 0}
_AT_LEAST_1 = {"min": 1}


class RecipeError(ValueError):
    """A recipe key or value harma-zoo does not read as written; the message names the key and what was expected."""


@dataclass(frozen=True)
class ScheduleSection:
    """``schedule``: the optimiser and the loop (method spec, section 7). Training reads every key."""

    epochs: int = field(metadata=_AT_LEAST_1)
    batch_size: int = field(metadata=_AT_LEAST_1)  # per process
    accumulation: int = field(metadata=_AT_LEAST_1)
    lr: float = field(metadata=_AT_LEAST_0)
    weight_decay: float = field(metadata=_AT_LEAST_0)
    betas: tuple[float, float]
    eps: float = field(metadata=_AT_LEAST_0)
    warmup_ratio: float = field(metadata={"min": 0, "below": 1})
    decay: Literal["linear", "cosine"]
    amp: bool
    seed: int
    num_workers: int = field(metadata=_AT_LEAST_0)
    val_interval: int = field(metadata=_AT_LEAST_1)
    val_batch_size: int = field(metadata=_AT_LEAST_1)
    log_interval: int = field(metadata=_AT_LEAST_1)
    # embed each batch in chunks of this many samples and back-propagate chunk by chunk: the full-batch
    # loss and gradients with memory bounded by the chunk (harma_zoo.recompute)
    chunk_size: int | None = field(default=None, metadata=_AT_LEAST_1)


@dataclass(frozen=True)
class DataSection:
    """``data``: where the splits are and how they are read. Paths are relative to ``root``.

    ``reader`` is ``dict(type=LAYOUT, **options)`` (the options of that reader) or the LAYOUT name
    alone; ``synthetic`` holds the options of the built-in dataset generator.
    """

    reader: str | dict[str, Any]
    root: str
    max_words: int = field(metadata=_AT_LEAST_1)
    image_root: str = ""
    train: str | None = None
    val: str | None = None
    test: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    train_classes: list[str] | None = None
    val_classes: list[str] | None = None
    test_classes: list[str] | None = None
    synthetic: dict[str, Any] | None = None
    skip_unreadable: bool = False
    # annotation files may name images outside the image root (absolute paths, '..') only when this is true
    images_outside_root: bool = False
    # an image with more pixels than this is refused before it is decoded (12000 x 12000 RGB costs 430 MB)
    max_image_pixels: int = field(default=DEFAULT_MAX_IMAGE_PIXELS, metadata=_AT_LEAST_1)
    # only the first N images of each split (and their captions): try any recipe on a handful of images
    limit: int | None = field(default=None, metadata=_AT_LEAST_1)


@dataclass(frozen=True)
class ModelSection:
    """``model`` (optional): how the model runs, not what it computes."""

    # recompute the backbone's blocks in the backward pass: less memory, the same gradients
    checkpoint_blocks: bool = False


# CLIP-style prompt ensembling for aerial scenes; a recipe's `zeroshot.templates` replaces the list.
DEFAULT_TEMPLATES = (
    "an aerial photograph of {}.",
    "a satellite image of {}.",
    "a remote sensing image of {}.",
    "an aerial view of {}.",
    "a top-down photo of {}.",
)


@dataclass(frozen=True)
class ZeroshotSection:
    """``zeroshot`` (optional): how zero-shot scene classification (``eval --task zeroshot-classification``,
    and every bench run) names the classes of an evaluation split's images.
    """

    # where an image's class is read: its file-name prefix (airport_1.jpg) or its folder (airport/1.jpg)
    labels: Literal["file_name", "folder"] = "file_name"
    # each holds one "{}" for the class; the embeddings of a class's prompts are averaged
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    # how a class is said in a prompt (denseresidential: dense residential area); default: its name
    class_names: dict[str, str] = field(default_factory=dict)
    # the candidate classes; default: every class among the split's images
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        for template in self.templates:
            if not isinstance(template, str) or template.count("{}") != 1:
                raise ValueError(f"zeroshot.templates: {template!r} must hold one '{{}}' for the class name")
        if not self.templates:
            raise ValueError("zeroshot.templates is empty; expected at least one template")


@dataclass(frozen=True)
class TuningSection:
    """``tuning`` (optional): the learning-rate grid of ``bench --tune``, each rate trained for ``epochs``.

    The chosen rate is the one with the best validation mR; rates within ``tolerance`` mR points of it
    count as tied, and the lowest of those is chosen (a higher rate that buys nothing measurable only
    risks divergence).
    """

    lrs: list[float]
    epochs: int = field(default=1, metadata=_AT_LEAST_1)
    tolerance: float = field(default=0.0, metadata=_AT_LEAST_0)

    def __post_init__(self) -> None:
        if len(self.lrs) < 2 or any(lr <= 0 for lr in self.lrs):
            raise ValueError(f"tuning.lrs must hold at least two positive rates, got {list(self.lrs)!r}")


@dataclass(frozen=True)
class Options:
    """The keys a section or a class accepts: name -> type, which must be given, and whether others may be."""

    types: dict[str, Any]
    required: frozenset[str] = frozenset()
    limits: dict[str, dict[str, float]] = field(default_factory=dict)
    open: bool = False  # a ``**options`` parameter: unknown keys are the class's to judge


def dataclass_options(cls: type) -> Options:
    """The fields of a dataclass as options: a field without a default must be given; ``metadata`` holds limits."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    limits = {f.name: dict(f.metadata) for f in fields if f.metadata}
    return Options({f.name: hints[f.name] for f in fields}, frozenset(required), limits)


def signature_options(function: Callable[..., Any], skip: Sequence[str] = ()) -> Options:
    """The keyword arguments of ``function`` (a class: its ``__init__``) but ``self`` and ``skip``."""
    target = function.__init__ if isinstance(function, type) else function
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # annotations this interpreter cannot evaluate: types unchecked
        hints = {}
    types_, required, open_ = {}, set(), False
    for name, parameter in inspect.signature(target).parameters.items():
        if name == "self" or name in skip or parameter.kind is parameter.VAR_POSITIONAL:
            continue
        if parameter.kind is parameter.VAR_KEYWORD:
            open_ = True
            continue
        types_[name] = hints.get(name, Any)
        if parameter.default is parameter.empty:
            required.add(name)
    return Options(types_, frozenset(required), open=open_)


# --- values against types ----------------------------------------------------------------------
def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as a config holds it: lists and tuples alike) is of type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if origin in _UNIONS:
        return any(matches(value, option) for option in args)
    if hint is None or hint is type(None):
        return value is None
    if origin is Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, os.PathLike):
        return isinstance(value, (str, os.PathLike))
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
        return all(matches(item, args[0]) for item in value) if args else True
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping) and (not args or all(matches(v, args[1]) for v in value.values()))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not know: the class checks its own arguments


def describe(hint: Any) -> str:
    """``hint`` in words, as an error message says what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        return " or ".join(describe(option) for option in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(value) for value in args)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
        return f"a list of {describe(args[0])} items" if args else "a list"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a dict"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "None"}
    if hint in names:
        return names[hint]
    if isinstance(hint, type) and issubclass(hint, os.PathLike):
        return "a path"
    return getattr(hint, "__name__", str(hint))


def _kind(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a dict"
    names = {bool: "a bool", int: "an integer", float: "a number", str: "a string", type(None): "None"}
    return names.get(type(value), type(value).__name__)


def _nearest(key: str, known: Sequence[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def check_options(values: Mapping[str, Any], options: Options, where: str) -> None:
    """Every key of ``values`` known and of its type, every required key present; ``where`` prefixes the keys."""
    prefix = f"{where}." if where else ""
    known = sorted(options.types)
    for key in values:
        if key in options.types or options.open:
            continue
        raise RecipeError(
            f"{prefix}{key} is not an option harma-zoo reads{_nearest(str(key), known, prefix)} "
            f"(known: {', '.join(known) or 'none'})"
        )
    missing = sorted(options.required - set(values))
    if missing:
        raise RecipeError(f"{prefix}{missing[0]} is missing ({describe(options.types[missing[0]])} expected)")
    for key, value in values.items():
        hint = options.types.get(key, Any)
        if not matches(value, hint):
            raise RecipeError(f"{prefix}{key} must be {describe(hint)}, got {value!r} ({_kind(value)})")
        limits = options.limits.get(key, {}) if value is not None else {}  # None: the option's own default
        if "min" in limits and value < limits["min"]:
            raise RecipeError(f"{prefix}{key} must be at least {limits['min']}, got {value!r}")
        if "below" in limits and value >= limits["below"]:
            raise RecipeError(f"{prefix}{key} must be below {limits['below']}, got {value!r}")


# --- the sections --------------------------------------------------------------------------------
def _registered(registry: Any, name: Any, where: str) -> Any:
    if not isinstance(name, str):
        raise RecipeError(f"{where}.type must be a registered name (a string), got {name!r}")
    try:
        return get_class(registry, name)
    except KeyError as error:
        raise RecipeError(f"{where}.type: {error.args[0]}") from None


def _typed_section(values: Any, where: str, registry: Any, options_of: Callable[[Any], Options]) -> Any:
    """A ``dict(type=NAME, **options)`` section: NAME registered, the options those of its class."""
    if not isinstance(values, Mapping):
        raise RecipeError(f"{where} must be a dict(type=..., ...), got {values!r}")
    cls = _registered(registry, values.get("type"), where)
    check_options({k: v for k, v in values.items() if k != "type"}, options_of(cls), where)
    return cls


def _check_method(method: Any) -> None:
    cls = _typed_section(method, "method", METHODS, lambda cls: dataclass_options(cls.Options))
    try:  # the method's own checks of its values (a positive bottleneck, known towers ...)
        cls.Options(**{k: v for k, v in method.items() if k != "type"})
    except (TypeError, ValueError) as error:
        raise RecipeError(f"method ({method['type']}): {error}") from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecipeError(f"{where} must be a dict, got {value!r}")
    return value


def _check_data(data: Any) -> None:
    check_options(_mapping(data, "data"), dataclass_options(DataSection), "data")
    try:
        layout, reader_options = reader_spec(data["reader"])
    except ValueError as error:
        raise RecipeError(str(error)) from None
    reader = _registered(READERS, layout, "data.reader")
    check_options(reader_options, signature_options(reader, skip=("path", "image_root", "split")), "data.reader")
    if data.get("synthetic"):
        check_options(data["synthetic"], signature_options(write_synthetic_dataset, skip=("root",)), "data.synthetic")


def _check_schedule(schedule: Any) -> None:
    check_options(_mapping(schedule, "schedule"), dataclass_options(ScheduleSection), "schedule")


def _section(cls: type, name: str) -> Callable[[Any], None]:
    """A check of an optional section declared as the dataclass ``cls``, which checks its own values too."""

    def check(value: Any) -> None:
        check_options(_mapping(value, name), dataclass_options(cls), name)
        try:
            cls(**value)
        except ValueError as error:
            raise RecipeError(str(error)) from None

    return check


CUSTOM_IMPORTS = Options({"imports": str | list[str], "allow_failed_imports": bool}, frozenset({"imports"}))


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise RecipeError(f"name must be a non-empty string, got {name!r}")


SECTIONS: dict[str, Callable[[Any], Any]] = {
    "backbone": lambda value: _typed_section(value, "backbone", BACKBONES, signature_options),
    "method": _check_method,
    "loss": lambda value: _typed_section(value, "loss", LOSSES, signature_options),
    "data": _check_data,
    "schedule": _check_schedule,
    "model": _section(ModelSection, "model"),
    "zeroshot": _section(ZeroshotSection, "zeroshot"),
    "tuning": _section(TuningSection, "tuning"),
    "name": _check_name,
    # mmengine imports these plug-in modules when it reads the recipe (harma_zoo.plugins)
    "custom_imports": lambda value: check_options(_mapping(value, "custom_imports"), CUSTOM_IMPORTS, "custom_imports"),
    # set by training on CPU for mmengine's Runner, which reads it; so it is in the config mmengine saves in a run
    "model_wrapper_cfg": lambda value: _mapping(value, "model_wrapper_cfg"),
}
REQUIRED_SECTIONS = ("backbone", "method", "data", "schedule")


def validate_recipe(cfg: Mapping[str, Any], source: str) -> None:
    """Refuse a recipe (after its overrides) that holds a key harma-zoo does not read or a value of the wrong type.

    Raises :class:`RecipeError` naming ``source``, the key (as ``--cfg-options`` writes it) and what was expected.
    """
    try:
        missing = [key for key in REQUIRED_SECTIONS if key not in cfg]
        if missing:
            raise RecipeError(f"lacks section(s) {', '.join(missing)}")
        known = sorted(SECTIONS)
        for key, value in cfg.items():
            if key in MMENGINE_KEYS:
                raise RecipeError(f"{key} is mmengine's own key; here it means nothing (in a section it merges)")
            if key.startswith(PRIVATE_PREFIX):
                continue
            if key not in SECTIONS:
                raise RecipeError(
                    f"{key} is not a section harma-zoo reads{_nearest(key, known, '')} (sections: {', '.join(known)}; "
                    f"a recipe's own helper variables start with '{PRIVATE_PREFIX}')"
                )
            SECTIONS[key](value)
    except RecipeError as error:
        raise RecipeError(f"recipe {source}: {error}") from None
