"""``harma-zoo bench``: run each composed cell of the matrix, then rank them.

Each combination (see ``harma_zoo.bench.compose``) runs in ``<out>/runs/<run id>/``. The composed
recipe is saved as ``runs/<run id>/<run id>.py`` and named by the run id: the checkpoint records
it, and ``harma-zoo train``/``eval``/``publish`` take it as it is.

A method that trains nothing (``frozen``) is evaluated zero-shot; the others train with
selection on validation mR, then the best checkpoint is evaluated on the val split and,
when the recipe defines one, the test split. A finished run writes ``result.json``
(atomically) and is never redone (a warning says so when the configuration asked for now
differs; delete the run folder to redo it); a run dir with a resume checkpoint but no
result continues from it (mmengine's ``last_checkpoint``). The leaderboard (Markdown, CSV,
JSON, PNG plot) covers every finished run under ``<out>/runs/``; one model card per trained
run goes to ``<out>/cards/``.
"""

from __future__ import annotations

import json
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmengine.config import Config
from rich.console import Console

from harma_zoo import __version__
from harma_zoo.bench.cards import write_bench_card
from harma_zoo.bench.compose import BenchRun, config_fingerprint, plan
from harma_zoo.bench.launch import LOG_NAME, check_processes, per_process_batch, run_side_by_side, torchrun_train
from harma_zoo.bench.leaderboard import ranked, rich_table, write_leaderboard
from harma_zoo.bench.presets import PRESETS
from harma_zoo.bench.variants import chosen_rates, with_lr_grid, with_seeds
from harma_zoo.engine.console import print_table
from harma_zoo.engine.evaluation import build_for_evaluation, default_device, evaluate_with_images
from harma_zoo.engine.recipe import load_split
from harma_zoo.engine.report import metrics_table
from harma_zoo.engine.train import train
from harma_zoo.engine.zeroshot import classify, zeroshot_section
from harma_zoo.fileio import atomic_write
from harma_zoo.params import parameter_summary
from harma_zoo.plaindata import as_json_data


def _write_json(path: Path, content: dict[str, Any]) -> None:
    text = json.dumps(content, indent=2, default=str) + "\n"
    atomic_write(path, lambda temporary: temporary.write_text(text))


def _evaluate_splits(cfg: Config, model) -> tuple[dict[str, dict], dict[str, dict]]:
    """Retrieval metrics on val, and on test when the recipe names one; zero-shot scene classification
    on the same splits when the recipe has a ``zeroshot`` section. Each split is read and its images embedded
    once for both."""
    model = model.to(default_device())
    batch, workers = cfg.schedule.get("val_batch_size", 64), cfg.schedule.get("num_workers", 0)
    section = zeroshot_section(cfg) if cfg.get("zeroshot") else None
    words = cfg.data.get("max_words", 30)
    metrics, zeroshot = {}, {}
    for split in ["val"] + (["test"] if cfg.data.get("test") else []):
        annotations = load_split(cfg, split)
        metrics[split], image_emb = evaluate_with_images(model, annotations, batch, workers)
        if section is not None:
            zeroshot[split] = classify(model, annotations, section, batch, workers, words, split_image_emb=image_emb)
    return metrics, zeroshot


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
                f"{run.run_id}: kept the finished result, made with another configuration; "
                f"delete {work_dir} to redo it",
                style="yellow",
                markup=False,
            )
        return result, False
    work_dir.mkdir(parents=True, exist_ok=True)
    resumed = (work_dir / "last_checkpoint").is_file()
    begun = work_dir / "config.sha256"  # the configuration the run was begun with
    if resumed and begun.is_file() and begun.read_text().strip() != fingerprint:
        console.print(
            f"{run.run_id}: resuming a run begun with another configuration; delete {work_dir} to start it afresh",
            style="yellow",
            markup=False,
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
    metrics, zeroshot = _evaluate_splits(cfg, model)
    print_table(console, metrics_table(metrics, title=f"{run.run_id}: retrieval (%)"))
    for split, outcome in zeroshot.items():
        shown = ", ".join(f"{key} {value:.2f}" for key, value in outcome["metrics"].items())
        console.print(f"{run.run_id}: zero-shot classification on {split} (%): {shown}", highlight=False)
    result = {
        "run": run.run_id,
        "group": run.group,
        "recipe": run.recipe,
        "backbone_label": run.backbone,
        "backbone": as_json_data(cfg.backbone),
        "dataset": {"name": run.dataset, **as_json_data(cfg.data)},
        "method": {
            "name": run.method,
            "type": cfg.method["type"],
            "options": as_json_data(cfg.method),
            "used": as_json_data(model.method.options_dict()),  # with the sizes a method scales to its backbone
        },
        "loss": as_json_data(cfg.loss),
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
        "zeroshot": zeroshot,
        "checkpoint": str(checkpoint.relative_to(runs_dir.parent)) if checkpoint else None,
        "config": f"runs/{run.run_id}/{run.run_id}.py",
        "config_sha256": fingerprint,
        "resumed": resumed,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "seed": cfg.schedule.get("seed"),
        "lr": cfg.schedule.get("lr") if summary["trainable"] else None,
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
    preset["cfg_options"] = {
        key: value.format(out=out) if isinstance(value, str) else value
        for key, value in preset.get("cfg_options", {}).items()
    }
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
    nproc_per_run: int = 1,
    parallel_runs: int = 1,
    seeds: list[int] | None = None,
    tune: bool = False,
) -> dict[str, Any]:
    """Run the matrix, then write the leaderboard, plot and cards; returns what happened.

    A preset supplies recipes, methods and overrides; a selection given here replaces the
    preset's of the same kind, and ``cfg_options`` win over the preset's overrides.
    ``nproc_per_run`` trains each run on that many processes (torchrun) with the same global
    batch, ``parallel_runs`` does that many runs at once on their own devices
    (``harma_zoo.bench.launch``); neither changes a run's result. ``seeds`` runs each cell once per
    seed, ``tune`` runs each cell's learning-rate grid instead and writes the chosen rates to
    ``<out>/tuning.json`` (``harma_zoo.bench.variants``).
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
        seeds = seeds if seeds is not None else chosen.get("seeds")
        tune = tune or chosen.get("tune", False)
        options.update(chosen.get("cfg_options", {}))
    options.update(cfg_options or {})
    runs = plan(recipes, methods, backbones, datasets, schedule, options)
    if tune and seeds:
        raise ValueError("--tune trains each rate with the recipe's seed; run --seeds after it, at the chosen rates")
    runs = with_lr_grid(runs) if tune else with_seeds(runs, seeds) if seeds else runs
    runs_dir = out / "runs"
    check_processes(nproc_per_run)
    for run in runs:  # before anything trains
        per_process_batch(run.cfg.schedule.batch_size, nproc_per_run, run.run_id)
    if parallel_runs < 1:
        raise ValueError(f"runs side by side must be at least 1, got {parallel_runs}")
    if nproc_per_run > 1 and train_fn is None:
        train_fn = torchrun_train(nproc_per_run)
    done, skipped, failed = [], [], {}
    side_by_side = []
    for run in runs:
        if parallel_runs > 1 and not (runs_dir / run.run_id / "result.json").is_file():
            side_by_side.append(run)  # finished runs are read back here, the others launched below
            continue
        try:
            _, did = run_one(run, runs_dir, console, train_fn)
        except Exception as error:  # one broken run (missing weights, bad options) must not stop the others
            logs = _record_failure(runs_dir / run.run_id, error)
            failed[run.run_id] = _failure(run.run_id, f"{type(error).__name__}: {error}", logs, console)
            continue
        (done if did else skipped).append(run.run_id)
    if side_by_side:
        for run_id, error in run_side_by_side(side_by_side, runs_dir, console, nproc_per_run, parallel_runs).items():
            if error is None:
                done.append(run_id)
            else:
                failed[run_id] = _failure(run_id, error, [runs_dir / run_id / LOG_NAME], console)
    results = finished_results(runs_dir)
    outcome = {"ran": done, "skipped": skipped, "failed": failed, "rows": [], "files": {}, "cards": []}
    if tune:
        outcome["tuning"] = _report_tuning(runs, results, failed, out, console)
    if results:
        rows = ranked(results)
        paths = write_leaderboard(rows, out)
        cards = [write_bench_card(result, out) for result in results if result.get("trained")]
        outcome.update(rows=rows, files=paths, cards=cards)
        print_table(console, rich_table(rows))
        written = ", ".join(str(path) for path in paths.values())
        console.print(f"leaderboard: {written}; {len(cards)} model card(s) in {out / 'cards'}", highlight=False)
        if "png" not in paths:
            console.print("no plot: matplotlib is not installed (pip install 'harma-zoo[plot]')", markup=False)
    else:
        console.print(f"no run under {runs_dir} has finished: no leaderboard written", highlight=False)
    if skipped:
        console.print(f"already finished, not redone: {', '.join(skipped)}", highlight=False)
    if failed:
        console.print(f"{len(failed)} of {len(runs)} run(s) failed; what each logged:", style="red", markup=False)
        for run_id, failure in failed.items():
            logs = ", ".join(str(log) for log in failure["logs"])
            console.print(f"  {run_id}: {logs}", highlight=False, soft_wrap=True)
    return outcome


def _report_tuning(
    runs: list[BenchRun], results: list[dict[str, Any]], failed: dict[str, Any], out: Path, console: Console
) -> dict[str, dict[str, Any]]:
    """Write ``<out>/tuning.json`` (each grid's validation mR per rate, the chosen rate) and print it."""
    rates = chosen_rates(runs, {result["run"]: result for result in results}, failed)
    _write_json(out / "tuning.json", {"selected_on": "val_mR", "groups": rates})
    for group, entry in rates.items():
        scores = ", ".join(
            f"{lr:g}: {'failed' if score is None else f'{score:.2f}'}" for lr, score in entry["val_mR"].items()
        )
        chosen = "not yet (runs missing)" if entry["chosen"] is None else f"{entry['chosen']:g}"
        console.print(
            f"{group}: val mR by rate ({entry['epochs']} epoch(s)) {scores}; chosen {chosen}", highlight=False
        )
    return rates


def _failure(run_id: str, message: str, logs: list[Path], console: Console) -> dict[str, Any]:
    """Say that ``run_id`` failed; returns its entry in the outcome's ``failed`` (message and log files)."""
    console.print(f"{run_id} failed: {message}", style="red", markup=False, highlight=False)
    return {"error": message, "logs": logs}


def _record_failure(work_dir: Path, error: Exception) -> list[Path]:
    """Write the run's traceback to ``<work dir>/error.log``; returns it and the run's mmengine logs, if any."""
    log = work_dir / "error.log"
    text = "".join(traceback.format_exception(error))
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(log, lambda temporary: temporary.write_text(text))
    return [log, *sorted(work_dir.glob("*/*.log"))]
