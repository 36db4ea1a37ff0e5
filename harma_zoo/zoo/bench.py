"""``harma-zoo bench``: train and evaluate a matrix of pairings x methods, then rank them.

A bench is the product of chosen RECIPES (or of ``backbones x datasets`` pieces from
``recipes/_base_/``, composed with one schedule piece) and METHODS, the names of
``recipes/_base_/methods/<name>.py``. Each combination runs in ``<out>/runs/<run id>/``
with run id ``<recipe>__<method>`` (or ``<backbone>__<dataset>__<method>``). The method
``recipe`` runs a recipe as it is, with its own method; its run id is the recipe's name, so
its checkpoint names a recipe of ``recipes/`` that anyone can train or evaluate again.

Composition rule. The recipe's ``method`` and ``loss`` sections are REPLACED (not merged)
by the method piece's. Options the recipe sets itself, beyond what its own ``_base_``
files give it (e.g. ``method = dict(bottleneck=32)`` in ``harma_tiny-vit_rsicd``), are
kept only when the piece's method type equals the recipe's: ``harma_paper`` on a HarMA
recipe keeps its bottleneck 32 and takes the piece's ``shared_towers``; ``lora`` or
``frozen`` on it get exactly the piece. The same holds for the loss, under the same
condition; a recipe whose own loss has another type than the piece's keeps its loss
whole. ``--cfg-options`` (and a preset's overrides) are merged last, into every run. The
composed recipe is saved as ``runs/<run id>/<run id>.py`` and named by the run id: the
checkpoint records it, and ``harma-zoo train``/``eval``/``publish`` take it as it is.

A method that trains nothing (``frozen``) is evaluated zero-shot; the others train with
selection on validation mR, then the best checkpoint is evaluated on the val split and,
when the recipe defines one, the test split. A finished run writes ``result.json``
(atomically) and is never redone (a warning says so when the configuration asked for now
differs; delete the run folder to redo it); a run dir with a resume checkpoint but no
result continues from it (mmengine's ``last_checkpoint``). The leaderboard (Markdown, CSV, JSON, PNG plot) covers every
finished run under ``<out>/runs/``; one model card per trained run goes to ``<out>/cards/``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from rich.console import Console

from harma_zoo import __version__
from harma_zoo.engine.evaluation import build_for_evaluation, evaluate
from harma_zoo.engine.recipe import REQUIRED, load_recipe, load_split
from harma_zoo.engine.report import metrics_table
from harma_zoo.engine.train import train
from harma_zoo.fileio import atomic_write
from harma_zoo.params import parameter_summary
from harma_zoo.registry import BACKBONES, get_class
from harma_zoo.resources import project_folder, recipe_path
from harma_zoo.zoo.bench_cards import write_bench_card
from harma_zoo.zoo.leaderboard import ranked, rich_table, write_leaderboard
from harma_zoo.zoo.presets import PRESETS

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


def _plain(value: Any) -> Any:
    """Config values as JSON data: ConfigDicts as dicts, tuples as lists."""
    return json.loads(json.dumps(value.to_dict() if hasattr(value, "to_dict") else value, default=list))


def _base_files(path: Path) -> list[Path]:
    """The files a config's ``_base_`` names, resolved against its folder (package-scoped ones are skipped)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            names = ast.literal_eval(node.value)
            names = [names] if isinstance(names, str) else list(names)
            return [(path.parent / name).resolve() for name in names if "::" not in name]
    return []


def recipe_own_options(path: Path, cfg: Config, section: str) -> dict[str, Any]:
    """Values of ``cfg[section]`` that the recipe file sets itself rather than inherits from its ``_base_``."""
    inherited: dict[str, Any] = {}
    for base in _base_files(path):
        if base.is_file():
            inherited.update(_plain(Config.fromfile(str(base)).get(section, {})))
    mine = cfg.get(section, {}).to_dict()
    return {key: value for key, value in mine.items() if key not in inherited or inherited[key] != _plain(value)}


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
    sections["name"] = safe_id(Path(backbone).stem, Path(dataset).stem)
    return Config(sections)


@dataclass
class BenchRun:
    """One cell of the matrix: its id, composed config and labels."""

    run_id: str
    cfg: Config
    recipe: str
    backbone: str
    dataset: str
    method: str


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
    for base in _base_files(recipe_file) if recipe_file else []:
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
    missing = [key for key in REQUIRED if key not in cfg]
    if missing:
        raise KeyError(f"{recipe} x {method} lacks section(s) {', '.join(missing)}")
    method_name = Path(method).stem
    dataset = dataset or dataset_label(recipe, recipe_file, cfg.data)
    run_id = safe_id(run_id) if run_id else safe_id(recipe, method_name)
    cfg.name = run_id  # the composed recipe, saved as runs/<run id>/<run id>.py, is the checkpoint's recipe
    return BenchRun(run_id, cfg, recipe, backbone, dataset, method_name)


def config_fingerprint(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(_plain(cfg), sort_keys=True).encode()).hexdigest()


def _write_json(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=2, default=str) + "\n"
    atomic_write(path, lambda temporary: temporary.write_text(text))


def _evaluate_splits(cfg: Config, model) -> dict[str, dict]:
    """Metrics on val, and on test when the recipe names one."""
    if torch.cuda.is_available():
        model = model.cuda()
    batch, workers = cfg.schedule.get("val_batch_size", 64), cfg.schedule.get("num_workers", 0)
    splits = ["val"] + (["test"] if cfg.data.get("test") else [])
    return {split: evaluate(model, load_split(cfg, split), batch, workers) for split in splits}


def run_one(run: BenchRun, runs_dir: Path, console: Console, train_fn=None) -> tuple[dict[str, Any], bool]:
    """Do one run unless its result exists; returns (result, whether this call did the work)."""
    train_fn = train_fn or train
    work_dir = runs_dir / run.run_id
    result_file = work_dir / "result.json"
    fingerprint = config_fingerprint(run.cfg)
    if result_file.is_file():
        result = json.loads(result_file.read_text())
        if result.get("config_sha256") != fingerprint:
            console.print(
                f"[yellow]{run.run_id}: kept the finished result, made with another configuration; "
                f"delete {work_dir} to redo it[/yellow]"
            )
        return result, False
    work_dir.mkdir(parents=True, exist_ok=True)
    resumed = (work_dir / "last_checkpoint").is_file()
    begun = work_dir / "config.sha256"  # the configuration the run was begun with
    if resumed and begun.is_file() and begun.read_text().strip() != fingerprint:
        console.print(
            f"[yellow]{run.run_id}: resuming a run begun with another configuration; "
            f"delete {work_dir} to start it afresh[/yellow]"
        )
    elif not resumed:
        atomic_write(begun, lambda temporary: temporary.write_text(fingerprint + "\n"))
    # The composed recipe, saved beside the run (`harma-zoo train` takes it as it is) and read back from
    # there: a file name per run gives each mmengine Runner its own experiment (logger, message hub).
    recipe_file = work_dir / f"{run.run_id}.py"
    text = run.cfg.pretty_text
    atomic_write(recipe_file, lambda temporary: temporary.write_text(text))
    cfg = Config.fromfile(str(recipe_file))
    started = time.perf_counter()
    checkpoint: Path | None = None
    best: dict[str, Any] = {}
    model, _ = build_for_evaluation(cfg, None)  # the recipe's model: what trains, how much
    summary = parameter_summary(model)
    if summary["trainable"]:
        del model
        console.rule(f"{run.run_id}: {'resume' if resumed else 'train'}")
        best = train_fn(cfg, work_dir, resume=resumed)
        checkpoint = work_dir / "best.safetensors"
        model, _ = build_for_evaluation(cfg, checkpoint)
    else:
        console.rule(f"{run.run_id}: zero-shot evaluation (nothing to train)")
    metrics = _evaluate_splits(cfg, model)
    console.print(metrics_table(metrics, title=f"{run.run_id}: retrieval (%)"))
    result = {
        "run": run.run_id,
        "recipe": run.recipe,
        "backbone_label": run.backbone,
        "backbone": _plain(cfg.backbone),
        "dataset": {"name": run.dataset, **_plain(cfg.data)},
        "method": {"name": run.method, "type": cfg.method["type"], "options": _plain(cfg.method)},
        "loss": _plain(cfg.loss),
        "parameters": {
            "trainable": summary["trainable"],
            "total": summary["total"],
            "backbone": summary["backbone_parameters"],
            "trainable_percent_of_backbone": summary["trainable_percent_of_backbone"],
        },
        "trained": bool(summary["trainable"]),
        "best_epoch": best.get("epoch"),
        "selected_on": "val" if checkpoint else None,
        "metrics": metrics,
        "checkpoint": str(checkpoint.relative_to(runs_dir.parent)) if checkpoint else None,
        "config": f"runs/{run.run_id}/{run.run_id}.py",
        "config_sha256": fingerprint,
        "resumed": resumed,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "seed": cfg.schedule.get("seed"),
        "toolkit_version": __version__,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json(result_file, result)
    return result, True


def finished_results(runs_dir: Path) -> list[dict[str, Any]]:
    """Every ``result.json`` under ``runs_dir``."""
    return [json.loads(path.read_text()) for path in sorted(Path(runs_dir).glob("*/result.json"))]


def resolve_preset(name: str, out: Path) -> dict[str, Any]:
    """The preset's selection, with its placeholders filled."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    preset = dict(PRESETS[name])
    preset["cfg_options"] = {key: value.format(out=out) for key, value in preset.get("cfg_options", {}).items()}
    return preset


def run_bench(
    recipes: list[str] | None = None,
    methods: list[str] | None = None,
    backbones: list[str] | None = None,
    datasets: list[str] | None = None,
    schedule: str | None = None,
    preset: str | None = None,
    out: str | Path = "results",
    cfg_options: dict[str, Any] | None = None,
    console: Console | None = None,
    train_fn=None,
) -> dict[str, Any]:
    """Run the matrix, then write the leaderboard, plot and cards; returns what happened.

    A preset supplies recipes, methods and overrides; a selection given here replaces the
    preset's of the same kind, and ``cfg_options`` win over the preset's overrides.
    """
    console = console or Console()
    out = Path(out)
    options: dict[str, Any] = {}
    if preset:
        chosen = resolve_preset(preset, out)
        recipes = recipes or chosen.get("recipes")
        methods = methods or chosen.get("methods")
        backbones = backbones or chosen.get("backbones")
        datasets = datasets or chosen.get("datasets")
        schedule = schedule or chosen.get("schedule")
        options.update(chosen.get("cfg_options", {}))
    options.update(cfg_options or {})
    runs = plan(recipes, methods, backbones, datasets, schedule, options)
    runs_dir = out / "runs"
    done, skipped, failed = [], [], {}
    for run in runs:
        try:
            _, did = run_one(run, runs_dir, console, train_fn)
        except Exception as error:  # one broken run (missing weights, bad options) must not stop the others
            failed[run.run_id] = f"{type(error).__name__}: {error}"
            console.print(f"[red]{run.run_id} failed:[/red] {failed[run.run_id]}", highlight=False)
            console.print(traceback.format_exc(), markup=False, highlight=False)
            continue
        (done if did else skipped).append(run.run_id)
    results = finished_results(runs_dir)
    rows = ranked(results)
    paths = write_leaderboard(rows, out)
    cards = [write_bench_card(result, out) for result in results if result.get("trained")]
    console.print(rich_table(rows))
    written = ", ".join(str(path) for path in paths.values())
    console.print(f"leaderboard: {written}; {len(cards)} model card(s) in {out / 'cards'}")
    if skipped:
        console.print(f"already finished, not redone: {', '.join(skipped)}")
    if failed:
        console.print(f"[red]failed:[/red] {', '.join(failed)}")
    return {"ran": done, "skipped": skipped, "failed": failed, "rows": rows, "files": paths, "cards": cards}
