"""``params``, ``train``, ``eval`` and ``export-backbone``: the model and its recipes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from harma_zoo.cli.options import add_cfg_options, add_model_arguments, backbone_from_spec

RETRIEVAL = "retrieval"
ZEROSHOT = "zeroshot-classification"  # harma_zoo.engine.zeroshot.TASK, not imported: the CLI starts without torch


def _params(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from harma_zoo.engine.console import print_table
    from harma_zoo.model import build_model
    from harma_zoo.params import parameter_summary

    method = {"type": args.method, **(args.method_cfg or {})}
    model = build_model(backbone_from_spec(args.backbone, args.backbone_cfg), method)
    summary = parameter_summary(model)
    summary.update(backbone=args.backbone, method=args.method, method_options=model.method.options_dict())
    if args.json:
        print(json.dumps(summary, indent=2, default=list), file=args.stdout)
        return 0
    table = Table(title=f"{args.method} on {args.backbone}")
    for column in ("tower", "kind", "total", "trainable"):
        table.add_column(column, justify="right" if column in ("total", "trainable") else "left")
    for row in summary["rows"]:
        table.add_row(row["tower"], row["kind"], f"{row['total']:,}", f"{row['trainable']:,}")
    table.add_section()
    table.add_row("all", "", f"{summary['total']:,}", f"{summary['trainable']:,}")
    print_table(console, table)
    console.print(
        f"trainable: {summary['trainable']:,} parameters = "
        f"{summary['trainable_percent_of_backbone']:.2f}% of the {summary['backbone_parameters']:,}-parameter backbone"
    )
    return 0


def _train(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.engine.console import print_table
    from harma_zoo.engine.recipe import load_recipe
    from harma_zoo.engine.report import metrics_table
    from harma_zoo.engine.train import train
    from harma_zoo.resources import recipe_path

    path = recipe_path(args.recipe)
    cfg = load_recipe(path, args.cfg_options)
    work_dir = Path(args.work_dir or Path("work_dirs") / path.stem)
    if args.resume_anyway and not args.resume:
        raise ValueError("--resume-anyway goes with --resume")
    best = train(cfg, work_dir, launcher=args.launcher, resume=args.resume, resume_anyway=args.resume_anyway)
    if best.get("metrics"):
        print_table(console, metrics_table({f"val, best epoch {best['epoch']}": best["metrics"]}))
        chosen = f"best adapter checkpoint (selected on validation mR): {work_dir / 'best.safetensors'}"
        console.print(chosen, highlight=False, soft_wrap=True)
    return 0


def _eval(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.engine.recipe import load_recipe
    from harma_zoo.fileio import atomic_write
    from harma_zoo.resources import recipe_path

    cfg = load_recipe(recipe_path(args.recipe), args.cfg_options)
    if args.limit is not None:
        cfg.merge_from_dict({"data.limit": args.limit})
    if args.confusion and args.task != ZEROSHOT:
        raise ValueError(f"--confusion goes with --task {ZEROSHOT}")
    measure = _zeroshot if args.task == ZEROSHOT else _retrieval
    result, table = measure(cfg, args)
    result = {"recipe": cfg.name, "task": args.task, "checkpoint": args.checkpoint, "split": args.split, **result}
    if args.out:
        atomic_write(Path(args.out), lambda temporary: temporary.write_text(json.dumps(result, indent=2)))
    if args.json:
        print(json.dumps(result, indent=2), file=args.stdout)
    else:
        from harma_zoo.engine.console import print_table

        print_table(console, table)
    for path in (args.out, args.confusion):
        if path:
            console.print(f"wrote {path}", highlight=False)
    return 0


def _source(args: argparse.Namespace) -> str:
    return Path(args.checkpoint).name if args.checkpoint else "zero-shot (no checkpoint)"


def _retrieval(cfg: Any, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from harma_zoo.engine.evaluation import evaluate_recipe
    from harma_zoo.engine.report import metrics_table

    done = evaluate_recipe(cfg, args.checkpoint, args.split, args.batch_size, args.device, progress=True)
    result = {"images": done.images, "captions": done.captions, "device": done.device, "metrics": done.metrics}
    title = f"retrieval (%) of {cfg.name}: {_source(args)}; {done.images:,} images, {done.captions:,} captions"
    return result, metrics_table({args.split: done.metrics}, title=title)


def _zeroshot(cfg: Any, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    from harma_zoo.engine.report import metrics_table
    from harma_zoo.engine.zeroshot import COLUMNS, classify_recipe, write_confusion_png

    result = classify_recipe(cfg, args.checkpoint, args.split, args.batch_size, args.device, progress=True)
    title = (
        f"zero-shot classification (%) of {cfg.name}: {_source(args)}; {result['images']:,} images, "
        f"{len(result['classes'])} classes"
    )
    if args.confusion:
        write_confusion_png(result, args.confusion, title)
    return result, metrics_table({args.split: result["metrics"]}, title=title, columns=COLUMNS)


def _export_backbone(args: argparse.Namespace, console: Console) -> int:
    import yaml

    from harma_zoo.engine.recipe import load_recipe
    from harma_zoo.resources import recipe_path
    from harma_zoo.zoo.export import export_backbone

    cfg = load_recipe(recipe_path(args.recipe), args.cfg_options)
    entry = export_backbone(cfg, args.checkpoint, args.out)
    size = entry.pop("size")
    console.print(f"wrote {args.out} ({size:,} bytes); its backbones.yaml entry:", highlight=False, soft_wrap=True)
    print(yaml.safe_dump([{"name": "NAME", **entry, "license": "LICENSE", "citation": "CITATION"}], sort_keys=False))
    return 0


def add_commands(commands: Any) -> None:
    params = commands.add_parser("params", help="trainable and total parameters by tower and module kind")
    add_model_arguments(params)
    params.add_argument("--json", action="store_true", help="print JSON instead of a table")
    params.set_defaults(run=_params)

    train = commands.add_parser("train", help="train a recipe on mmengine's Runner")
    train.add_argument("recipe", help="recipe file, or its name in recipes/")
    train.add_argument("--work-dir", help="where logs and checkpoints go (default work_dirs/RECIPE)")
    add_cfg_options(train)
    train.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="pytorch: under torchrun")
    train.add_argument("--resume", action="store_true", help="continue from the work dir's last checkpoint")
    train.add_argument(
        "--resume-anyway",
        action="store_true",
        help="with --resume: continue although the data or schedule changed since the checkpoint (refused otherwise)",
    )
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "eval", help="retrieval metrics (or zero-shot scene classification) of a recipe's model on one split"
    )
    evaluate.add_argument("recipe", help="recipe file, or its name in recipes/")
    evaluate.add_argument("--checkpoint", help="adapter checkpoint (.safetensors); none: the frozen backbone")
    evaluate.add_argument("--split", default="val", help="a split the recipe defines (val, test)")
    evaluate.add_argument("--batch-size", type=int, help="embedding batch size")
    evaluate.add_argument(
        "--task",
        choices=[RETRIEVAL, ZEROSHOT],
        default=RETRIEVAL,
        help="retrieval R@K both ways, or zero-shot scene classification (top-1/5, mean per-class recall; "
        "the recipe's `zeroshot` section names classes and prompts)",
    )
    evaluate.add_argument(
        "--confusion", metavar="PNG", help="with zero-shot classification: write its confusion matrix"
    )
    evaluate.add_argument("--out", help="also write the metrics to this JSON file")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    evaluate.add_argument("--device", help="where the model runs: cpu, cuda, cuda:1 (default: cuda when there is one)")
    evaluate.add_argument(
        "--limit", type=int, metavar="N", help="only the split's first N images and their captions (data.limit=N)"
    )
    add_cfg_options(evaluate)
    evaluate.set_defaults(run=_eval)

    export = commands.add_parser("export-backbone", help="write a `full` run's backbone as a zoo weights file")
    export.add_argument("recipe", help="the recipe the checkpoint was trained with (file or name in recipes/)")
    export.add_argument("--checkpoint", required=True, help="the run's checkpoint (best.safetensors)")
    export.add_argument("--out", required=True, help="weights file to write, e.g. zoo_files/NAME.safetensors")
    add_cfg_options(export)
    export.set_defaults(run=_export_backbone)
