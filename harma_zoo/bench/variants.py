"""Seeds and learning-rate grids: copies of a bench run that differ in one schedule value.

``--seeds 0 1 2`` turns each run into ``<run id>__seed0`` ... with ``schedule.seed`` set; the leaderboard
groups them back under ``<run id>`` (mean and standard deviation). ``--tune`` turns each run that trains
into one run per rate of its recipe's ``tuning.lrs`` (``<run id>__lr0.003`` ...), each trained for
``tuning.epochs`` with seed as in the recipe; ``chosen_rates`` then picks a rate per run on validation mR
(``harma_zoo.engine.recipe_schema.TuningSection`` says how ties are broken).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from harma_zoo.bench.compose import BenchRun, safe_id
from harma_zoo.engine.metric import MEAN_RECALL
from harma_zoo.engine.recipe_schema import TuningSection, validate_recipe


def _variant(run: BenchRun, suffix: str, options: dict[str, Any]) -> BenchRun:
    cfg = copy.deepcopy(run.cfg)
    cfg.merge_from_dict(options)
    run_id = safe_id(f"{run.run_id}__{suffix}")
    cfg.name = run_id
    validate_recipe(cfg, run_id)
    return BenchRun(run_id, cfg, run.recipe, run.backbone, run.dataset, run.method, group=run.group)


def _trains(run: BenchRun) -> bool:
    """Whether the run trains anything: a frozen one has neither seed nor rate to vary."""
    return run.cfg.method.get("type") != "frozen"


def with_seeds(runs: Iterable[BenchRun], seeds: Iterable[int]) -> list[BenchRun]:
    """Each run once per seed; a run that trains nothing has no seed to vary and is kept once."""
    seeds = list(dict.fromkeys(seeds))
    varied = []
    for run in runs:
        if not _trains(run):
            varied.append(run)
            continue
        varied.extend(_variant(run, f"seed{seed}", {"schedule.seed": seed}) for seed in seeds)
    return varied


def tuning_section(run: BenchRun) -> TuningSection | None:
    """The run's ``tuning`` section, or None when its recipe has none."""
    section = run.cfg.get("tuning")
    return TuningSection(**section) if section else None


def with_lr_grid(runs: Iterable[BenchRun]) -> list[BenchRun]:
    """Each run that trains and has a ``tuning`` section, once per rate of its grid, for ``tuning.epochs``."""
    grid = []
    for run in runs:
        section = tuning_section(run)
        if section is None or not _trains(run):
            continue
        for lr in section.lrs:
            grid.append(_variant(run, f"lr{lr:g}", {"schedule.lr": lr, "schedule.epochs": section.epochs}))
    if not grid:
        raise ValueError("--tune: no run's recipe has a `tuning` section (tuning = dict(lrs=[...], epochs=1))")
    return grid


def chosen_rates(
    runs: Iterable[BenchRun], results: dict[str, dict[str, Any]], failed: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """Per group of grid runs: each rate's validation mR (None: failed, e.g. diverged) and the chosen rate.

    The choice is None until every rate of the group has finished or failed.
    """
    failed = set(failed)
    groups: dict[str, dict[str, Any]] = {}
    waiting = set()
    for run in runs:
        section = tuning_section(run)
        if section is None or not _trains(run):
            continue
        entry = groups.setdefault(
            run.group, {"val_mR": {}, "epochs": section.epochs, "tolerance": section.tolerance, "chosen": None}
        )
        result = results.get(run.run_id)
        score = result["metrics"]["val"][MEAN_RECALL] if result else None
        entry["val_mR"][run.cfg.schedule.lr] = score if score == score else None  # NaN: diverged
        if result is None and run.run_id not in failed:
            waiting.add(run.group)
    for group, entry in groups.items():
        usable = {lr: score for lr, score in entry["val_mR"].items() if score is not None}
        if group not in waiting and usable:
            best = max(usable.values())
            entry["chosen"] = min(lr for lr, score in usable.items() if score >= best - entry["tolerance"])
    return groups
