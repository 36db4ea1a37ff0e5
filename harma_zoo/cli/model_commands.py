"""``params``, ``train``, ``eval`` and ``export-backbone``: the model and its recipes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from harma_zoo.cli.options import add_cfg_options, add_model_arguments, backbone_from_spec


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
    from harma_zoo.engine.console import print_table
    from harma_zoo.engine.evaluation import evaluate_recipe
    from harma_zoo.engine.recipe import load_recipe
    from harma_zoo.engine.report import metrics_table
    from harma_zoo.fileio import atomic_write
    from harma_zoo.resources import recipe_path

    cfg = load_recipe(recipe_path(args.recipe), args.cfg_options)
    if args.limit is not None:
        cfg.merge_from_dict({"data.limit": args.limit})
    done = evaluate_recipe(cfg, args.checkpoint, args.split, args.batch_size, args.device, progress=True)
    result = {
        "recipe": cfg.name,
        "checkpoint": args.checkpoint,
        "split": args.split,
        "images": done.images,
        "captions": done.captions,
        "device": done.device,
        "metrics": done.metrics,
    }
    if args.out:
        atomic_write(Path(args.out), lambda temporary: temporary.write_text(json.dumps(result, indent=2)))
    if args.json:
        print(json.dumps(result, indent=2), file=args.stdout)
    else:
        source = Path(args.checkpoint).name if args.checkpoint else "zero-shot (no checkpoint)"
        title = f"retrieval (%) of {cfg.name}: {source}; {done.images:,} images, {done.captions:,} captions"
        print_table(console, metrics_table({args.split: done.metrics}, title=title))
    if args.out:
        console.print(f"wrote {args.out}", highlight=False)
    return 0


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

    evaluate = commands.add_parser("eval", help="retrieval metrics of a recipe's model on one split")
    evaluate.add_argument("recipe", help="recipe file, or its name in recipes/")
    evaluate.add_argument("--checkpoint", help="adapter checkpoint (.safetensors); none: the frozen backbone")
    evaluate.add_argument("--split", default="val", help="a split the recipe defines (val, test)")
    evaluate.add_argument("--batch-size", type=int, help="embedding batch size")
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
