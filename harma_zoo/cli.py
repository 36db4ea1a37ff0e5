"""The ``harma-zoo`` command line: thin subcommands over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmengine.config import DictAction
from rich.console import Console
from rich.table import Table

from harma_zoo.engine.report import metrics_table
from harma_zoo.fileio import atomic_write
from harma_zoo.model import build_model
from harma_zoo.params import parameter_summary
from harma_zoo.registry import BACKBONES, get_class
from harma_zoo.resources import recipe_path


def backbone_config(spec: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """``FAMILY`` or ``FAMILY:VALUE`` (VALUE sets the family's main option) plus extra options."""
    family, _, value = spec.partition(":")
    config: dict[str, Any] = {"type": family}
    if value:
        config[get_class(BACKBONES, family).main_option] = value
    config.update(options or {})
    return config


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone",
        default="open_clip:harma-tiny-vit",
        help="FAMILY[:VALUE], e.g. open_clip:ViT-B-32 or hf_clip:openai/clip-vit-base-patch32",
    )
    parser.add_argument("--backbone-cfg", nargs="+", action=DictAction, help="extra backbone options key=value")
    parser.add_argument("--method", default="harma", help="registered method name")
    parser.add_argument(
        "--method-cfg", nargs="+", action=DictAction, help="method options key=value, e.g. 'shared_towers=(image,text)'"
    )


def _params(args: argparse.Namespace, console: Console) -> int:
    method = {"type": args.method, **(args.method_cfg or {})}
    model = build_model(backbone_config(args.backbone, args.backbone_cfg), method)
    summary = parameter_summary(model)
    summary.update(backbone=args.backbone, method=args.method, method_options=model.method.options_dict())
    if args.json:
        print(json.dumps(summary, indent=2, default=list))
        return 0
    table = Table(title=f"{args.method} on {args.backbone}")
    for column in ("tower", "kind", "total", "trainable"):
        table.add_column(column, justify="right" if column in ("total", "trainable") else "left")
    for row in summary["rows"]:
        table.add_row(row["tower"], row["kind"], f"{row['total']:,}", f"{row['trainable']:,}")
    table.add_section()
    table.add_row("all", "", f"{summary['total']:,}", f"{summary['trainable']:,}")
    console.print(table)
    console.print(
        f"trainable: {summary['trainable']:,} parameters = "
        f"{summary['trainable_percent_of_backbone']:.2f}% of the {summary['backbone_parameters']:,}-parameter backbone"
    )
    return 0


def _train(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.engine.recipe import load_recipe
    from harma_zoo.engine.train import train

    path = recipe_path(args.recipe)
    cfg = load_recipe(path, args.cfg_options)
    work_dir = Path(args.work_dir or Path("work_dirs") / path.stem)
    best = train(cfg, work_dir, launcher=args.launcher, resume=args.resume)
    if best.get("metrics"):
        console.print(metrics_table({f"val, best epoch {best['epoch']}": best["metrics"]}))
        console.print(f"best adapter checkpoint (selected on validation mR): {work_dir / 'best.safetensors'}")
    return 0


def _eval(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.engine.evaluation import evaluate_recipe
    from harma_zoo.engine.recipe import load_recipe

    cfg = load_recipe(recipe_path(args.recipe), args.cfg_options)
    metrics = evaluate_recipe(cfg, args.checkpoint, args.split, args.batch_size)
    label = f"{args.split}: {args.checkpoint or 'zero-shot'}"
    console.print(metrics_table({label: metrics}))
    if args.out:
        result = {"recipe": cfg.name, "checkpoint": args.checkpoint, "split": args.split, "metrics": metrics}
        atomic_write(Path(args.out), lambda temporary: temporary.write_text(json.dumps(result, indent=2)))
        console.print(f"wrote {args.out}")
    return 0


def _demo(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.demo import run_demo

    run_demo(args.work_dir, console)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harma-zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    params = commands.add_parser("params", help="trainable and total parameters by tower and module kind")
    _add_model_arguments(params)
    params.add_argument("--json", action="store_true", help="print JSON instead of a table")
    params.set_defaults(run=_params)

    train = commands.add_parser("train", help="train a recipe on mmengine's Runner")
    train.add_argument("recipe", help="recipe file, or its name in recipes/")
    train.add_argument("--work-dir", help="where logs and checkpoints go (default work_dirs/RECIPE)")
    train.add_argument("--cfg-options", nargs="+", action=DictAction, help="override recipe values: key.sub=value")
    train.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="pytorch: under torchrun")
    train.add_argument("--resume", action="store_true", help="continue from the work dir's last checkpoint")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="retrieval metrics of a recipe's model on one split")
    evaluate.add_argument("recipe", help="recipe file, or its name in recipes/")
    evaluate.add_argument("--checkpoint", help="adapter checkpoint (.safetensors); none: the frozen backbone")
    evaluate.add_argument("--split", default="val", help="a split the recipe defines (val, test)")
    evaluate.add_argument("--batch-size", type=int, help="embedding batch size")
    evaluate.add_argument("--out", help="also write the metrics to this JSON file")
    evaluate.add_argument("--cfg-options", nargs="+", action=DictAction, help="override recipe values: key.sub=value")
    evaluate.set_defaults(run=_eval)

    demo = commands.add_parser("demo", help="the built-in default job: tiny backbone, synthetic data, CPU minutes")
    demo.add_argument("--work-dir", default="work_dirs/demo")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.run(args, console)
    except (KeyError, ValueError, TypeError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        console.print(f"[red]error:[/red] {message}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
