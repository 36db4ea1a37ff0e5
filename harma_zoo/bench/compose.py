"""Composing a bench matrix: recipes (or backbone x dataset pieces) x method pieces, as mmengine configs.

A bench is the product of chosen RECIPES (or of ``backbones x datasets`` pieces from
``recipes/_base_/``, composed with one schedule piece) and METHODS, the names of
``recipes/_base_/methods/<name>.py``. Each combination has the run id ``<recipe>__<method>``
(or ``<backbone>__<dataset>__<method>``). The method ``recipe`` runs a recipe as it is, with
its own method; its run id is the recipe's name, so its checkpoint names a recipe of
``recipes/`` that anyone can train or evaluate again.

Composition rule. The recipe's ``method`` and ``loss`` sections are REPLACED (not merged)
by the method piece's. Options the recipe sets itself, beyond what its own ``_base_``
files give it (e.g. ``method = dict(bottleneck=32)`` in ``harma_tiny-vit_rsicd``), are
kept only when the piece's method type equals the recipe's: ``harma_paper`` on a HarMA
recipe keeps its bottleneck 32 and takes the piece's ``shared_towers``; ``lora`` or
``frozen`` on it get exactly the piece. The same holds for the loss, under the same
condition; a recipe whose own loss has another type than the piece's keeps its loss
whole. ``--cfg-options`` (and a preset's overrides) are merged last, into every run. A piece's
``custom_imports`` (a plug-in it needs) go into the composed recipe with what is taken from it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmengine.config import Config

from harma_zoo.engine.recipe import load_recipe
from harma_zoo.engine.recipe_schema import validate_recipe
from harma_zoo.plaindata import as_json_data
from harma_zoo.registry import BACKBONES, get_class
from harma_zoo.resources import project_folder, recipe_path

DEFAULT_METHODS = ("frozen", "harma")
AS_RECIPE = "recipe"  # the method that keeps each recipe's own method and loss
DEFAULT_SCHEDULE = "reference"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(*parts: str) -> str:
    """A run id that is a safe file name on every system: ``part__part``, odd characters as ``-``."""
    cleaned = [_UNSAFE.sub("-", part).strip("-.") or "x" for part in parts]
    return "__".join(cleaned)


def pieces_folder(kind: str) -> Path:
    return project_folder("recipes") / "_base_" / kind


def piece_path(kind: str, name: str) -> Path:
    """``recipes/_base_/<kind>/<name>.py``, or ``name`` itself when it is a file."""
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
    candidate = pieces_folder(kind) / f"{path.stem}.py"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in pieces_folder(kind).glob("*.py"))
    raise FileNotFoundError(f"no {kind} piece {name!r}; known: {', '.join(known)}")


def base_files(path: Path) -> list[Path]:
    """The local files a recipe's ``_base_`` names, resolved as mmengine resolves them."""
    names = Config._get_base_files(str(path))
    resolved = (Config._get_cfg_path(name, str(path)) for name in names)
    return [Path(file).resolve() for file, scope in resolved if scope is None]


def recipe_own_options(path: Path, cfg: Config, section: str) -> dict[str, Any]:
    """Values of ``cfg[section]`` that the recipe file sets itself rather than inherits from its ``_base_``.

    The inherited values are what mmengine composes from the same ``_base_`` list on its own.
    """
    bases = [str(base) for base in base_files(path)]
    inherited = as_json_data(Config.fromstring(f"_base_ = {bases!r}\n", ".py").get(section, {})) if bases else {}
    mine = as_json_data(cfg.get(section, {}))
    return {key: value for key, value in mine.items() if key not in inherited or inherited[key] != value}


def _import_names(custom_imports: Any) -> list[str]:
    names = custom_imports.get("imports") or []
    return [names] if isinstance(names, str) else list(names)


def with_custom_imports(sections: dict[str, Any] | Config, piece: Config) -> None:
    """Add ``piece``'s ``custom_imports`` to ``sections``: the composed recipe imports the plug-ins its pieces need."""
    wanted = piece.get("custom_imports")
    if not wanted:
        return
    names, allowed = _import_names(wanted), wanted.get("allow_failed_imports", False)
    if current := sections.get("custom_imports"):
        names = [*_import_names(current), *names]
        allowed = allowed and current.get("allow_failed_imports", False)
    sections["custom_imports"] = {"imports": list(dict.fromkeys(names)), "allow_failed_imports": allowed}


def compose_method(cfg: Config, method: str, recipe_file: Path | None = None) -> Config:
    """``cfg`` with its method and loss replaced by the method piece (see the module's composition rule)."""
    piece = Config.fromfile(str(piece_path("methods", method)))
    if "method" not in piece:
        raise KeyError(f"method piece {method!r} defines no `method` section")
    new_method = piece.method.to_dict()
    new_loss = piece.loss.to_dict() if "loss" in piece else {"type": "harma"}
    if recipe_file is not None and cfg.method.get("type") == new_method.get("type"):
        new_method.update(recipe_own_options(recipe_file, cfg, "method"))
        own_loss = recipe_own_options(recipe_file, cfg, "loss")
        if own_loss.get("type", new_loss.get("type")) != new_loss.get("type"):
            new_loss = cfg.loss.to_dict()
        else:
            new_loss.update(own_loss)
    cfg.method = new_method  # assignment replaces the section (as `_delete_=True` would); merging would not
    cfg.loss = new_loss
    with_custom_imports(cfg, piece)
    return cfg


def recipe_from_pieces(backbone: str, dataset: str, schedule: str) -> Config:
    """A recipe (without method) from a backbone, a dataset and a schedule piece; named ``backbone__dataset``."""
    sections: dict[str, Any] = {}
    for kind, name, key in (
        ("backbones", backbone, "backbone"),
        ("datasets", dataset, "data"),
        ("schedules", schedule, "schedule"),
    ):
        piece = Config.fromfile(str(piece_path(kind, name)))
        if key not in piece:
            raise KeyError(f"{kind} piece {name!r} defines no `{key}` section")
        sections[key] = piece[key].to_dict()
        with_custom_imports(sections, piece)
    sections["name"] = safe_id(Path(backbone).stem, Path(dataset).stem)
    return Config(sections)


@dataclass
class BenchRun:
    """One cell of the matrix: its id, composed config and labels.

    ``group``: the cell that seeds and learning-rate grids (``harma_zoo.bench.variants``) vary; the run
    itself when empty.
    """

    run_id: str
    cfg: Config
    recipe: str
    backbone: str
    dataset: str
    method: str
    group: str = ""

    def __post_init__(self) -> None:
        self.group = self.group or self.run_id


def backbone_label(backbone: dict[str, Any]) -> str:
    """``family:main option`` (``open_clip:ViT-B-32``), or just the family when that option is unset."""
    family = backbone.get("type", "?")
    try:
        value = backbone.get(get_class(BACKBONES, family).main_option)
    except KeyError:
        value = None
    return f"{family}:{value}" if value else family


def _name_parts(name: str) -> list[str]:
    """``[method, backbone, dataset]`` of a recipe named by the convention, else ``[]``."""
    parts = name.split("_")
    return parts if len(parts) == 3 and all(parts) else []


def method_label(name: str, cfg: Config) -> str:
    """The method part of a ``<method>_<backbone>_<dataset>`` recipe name, else the method's type."""
    parts = _name_parts(name)
    return parts[0] if parts else str(cfg.method.get("type"))


def dataset_label(name: str, recipe_file: Path | None, data: dict[str, Any]) -> str:
    """The dataset part of a ``<method>_<backbone>_<dataset>`` recipe name, else its datasets piece, else root."""
    parts = _name_parts(name)
    if parts:
        return parts[2]
    for base in base_files(recipe_file) if recipe_file else []:
        if base.parent.name == "datasets":
            return base.stem
    return Path(str(data.get("root", "data"))).name


def plan(
    recipes: list[str] | None = None,
    methods: list[str] | None = None,
    backbones: list[str] | None = None,
    datasets: list[str] | None = None,
    schedule: str | None = None,
    cfg_options: dict[str, Any] | None = None,
) -> list[BenchRun]:
    """Every (pairing, method) combination, composed; checks run ids are unique."""
    methods = list(methods or DEFAULT_METHODS)
    if bool(backbones) != bool(datasets):
        raise ValueError("--backbones and --datasets go together: runs are their product")
    if schedule and not backbones:
        raise ValueError("--schedule applies to --backbones x --datasets (recipes bring their own schedule)")
    if not recipes and not backbones:
        raise ValueError("nothing to bench: give --recipes, or --backbones with --datasets, or a --preset")
    if AS_RECIPE in methods and backbones:
        raise ValueError(f"method {AS_RECIPE!r} runs recipes as they are; --backbones x --datasets have no method")
    for method in methods:
        if method != AS_RECIPE:
            piece_path("methods", method)  # fail before any training on a misspelt method
    runs: list[BenchRun] = []
    for recipe in recipes or []:
        path = recipe_path(recipe)
        for method in methods:
            if method == AS_RECIPE:
                cfg = load_recipe(path)
                runs.append(_run(cfg, method_label(cfg.name, cfg), cfg.name, backbone_label(cfg.backbone), path,
                                 cfg_options, run_id=cfg.name))  # fmt: skip
                continue
            cfg = compose_method(load_recipe(path), method, path)
            runs.append(_run(cfg, method, cfg.name, backbone_label(cfg.backbone), path, cfg_options))
    for backbone in backbones or []:
        for dataset in datasets or []:
            for method in methods:
                cfg = compose_method(recipe_from_pieces(backbone, dataset, schedule or DEFAULT_SCHEDULE), method)
                runs.append(_run(cfg, method, cfg.name, Path(backbone).stem, None, cfg_options, Path(dataset).stem))
    seen: dict[str, BenchRun] = {}
    for run in runs:
        if run.run_id in seen:
            raise ValueError(f"two runs would share the id {run.run_id!r}; give the recipes different names")
        seen[run.run_id] = run
    return runs


def _run(
    cfg: Config,
    method: str,
    recipe: str,
    backbone: str,
    recipe_file: Path | None,
    cfg_options: dict[str, Any] | None,
    dataset: str | None = None,
    run_id: str | None = None,
) -> BenchRun:
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    validate_recipe(cfg, f"{recipe} x {method}")
    method_name = Path(method).stem
    dataset = dataset or dataset_label(recipe, recipe_file, cfg.data)
    run_id = safe_id(run_id) if run_id else safe_id(recipe, method_name)
    cfg.name = run_id  # the composed recipe, saved as runs/<run id>/<run id>.py, is the checkpoint's recipe
    return BenchRun(run_id, cfg, recipe, backbone, dataset, method_name)


def config_fingerprint(cfg: Config) -> str:
    """sha256 of the composed configuration: a finished run is redone only when this changes."""
    return hashlib.sha256(json.dumps(as_json_data(cfg), sort_keys=True).encode()).hexdigest()
