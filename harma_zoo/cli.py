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
from harma_zoo.zoo.presets import PRESETS


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
    source = Path(args.checkpoint).name if args.checkpoint else "zero-shot (no checkpoint)"
    console.print(metrics_table({args.split: metrics}, title=f"retrieval (%) of {cfg.name}: {source}"))
    if args.out:
        result = {"recipe": cfg.name, "checkpoint": args.checkpoint, "split": args.split, "metrics": metrics}
        atomic_write(Path(args.out), lambda temporary: temporary.write_text(json.dumps(result, indent=2)))
        console.print(f"wrote {args.out}")
    return 0


def _bench(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.zoo.bench import run_bench

    chosen = args.recipes or args.backbones or args.datasets
    preset = args.preset or (None if chosen else "demo")  # bare `harma-zoo bench`: the built-in demo matrix
    outcome = run_bench(
        recipes=args.recipes,
        methods=args.methods,
        backbones=args.backbones,
        datasets=args.datasets,
        schedule=args.schedule,
        preset=preset,
        out=args.out,
        cfg_options=args.cfg_options,
        console=console,
    )
    return 1 if outcome["failed"] else 0


# --- the zoo: list, fetch, publish, convert-original (library: harma_zoo.zoo) ---------------------------
ZOO_LISTS = ("backbones", "checkpoints", "recipes")


def _zoo_rows(what: str, index: Any, filters: Any) -> list[dict[str, Any]]:
    from harma_zoo.zoo.catalog import backbone_rows, checkpoint_rows, recipe_rows

    return {"backbones": backbone_rows, "checkpoints": checkpoint_rows, "recipes": recipe_rows}[what](index, filters)


def _zoo_table(what: str, rows: list[dict[str, Any]]) -> Table:
    def options(mapping: dict[str, Any]) -> str:
        return " ".join(f"{key}={value}" for key, value in mapping.items() if key != "type")

    columns = {
        "backbones": ("name", "family", "architecture", "weights", "sha256", "license"),
        "checkpoints": ("name", "backbone", "method", "dataset", "selected on", "mR", "trainable", "MB"),
        "recipes": ("name", "backbone", "method", "dataset", "epochs"),
    }[what]
    table = Table(title=f"{what} ({len(rows)})")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for row in rows:
        if what == "backbones":
            weights = row["weights"]
            is_file = weights["kind"] in ("url", "file")
            sha = weights["sha256"][:12] if weights["sha256"] else ("unknown" if is_file else "-")
            source = f"{weights['kind']}: {weights['source']}" if weights["source"] else weights["kind"]
            cells = [row["name"], row["family"], options(row["architecture"]), source, sha, row["license"]]
        elif what == "checkpoints":
            method = row["method"]
            shared = method.get("shared_towers")
            label = method["type"] + (f" shared={'+'.join(shared)}" if shared is not None else "")
            selected = row["selected_on"] or "-"
            score = (row["metrics"].get(row["selected_on"]) or {}).get("mR") if row["selected_on"] else None
            cells = [
                row["name"],
                row["backbone"],
                label,
                row["dataset"]["name"],
                selected + (f" (epoch {row['epoch']})" if row["epoch"] is not None else ""),
                f"{score:.2f}" if score is not None else "-",
                f"{row['parameters']['trainable']:,}",
                f"{row['size'] / 1e6:.2f}",
            ]
        else:
            cells = [
                row["name"],
                row["backbone"] or f"{row['family']}: {options(row['backbone_config'])}",
                row["method"],
                row["dataset"],
                str(row["epochs"]),
            ]
        table.add_row(*cells)
    return table


def _zoo_list(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.zoo.catalog import Filters
    from harma_zoo.zoo.index import load_index

    index = load_index(args.registry)
    filters = Filters(args.family, args.method, args.dataset, args.backbone, args.filter)
    kinds = ZOO_LISTS if args.what == "all" else (args.what,)
    if args.what == "all" and (args.method or args.dataset):
        kinds = ("checkpoints", "recipes")  # backbones have neither
    found = {what: _zoo_rows(what, index, filters) for what in kinds}
    if args.json:
        print(json.dumps(found if args.what == "all" else found[args.what], indent=2, default=str))
        return 0
    for what, rows in found.items():
        if rows or args.what != "all":
            console.print(_zoo_table(what, rows))
        if what == "checkpoints" and not index.checkpoints:
            console.print("no checkpoints published yet: `harma-zoo publish RUN_DIR` adds one", highlight=False)
    return 0


def _zoo_fetch(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.zoo.download import fetch_entry
    from harma_zoo.zoo.fetch import ChecksumError, FetchError
    from harma_zoo.zoo.index import load_index

    index = load_index(args.registry)
    try:
        result = fetch_entry(index, args.name, cache_dir=args.cache_dir, progress=not args.json)
    except (ChecksumError, FetchError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        return 1
    if args.json:
        print(json.dumps({**vars(result), "path": str(result.path) if result.path else None}, indent=2, default=str))
        return 0
    for note in result.notes:
        console.print(note, highlight=False, soft_wrap=True)
    if result.path is not None:
        state = "verified" if result.verified else "NOT verified (no sha256 in the registry)"
        console.print(f"{args.name}: {state}, sha256 {result.sha256}", highlight=False, soft_wrap=True)
        if result.kind == "backbone":
            console.print(f"backbone config: {result.config}", highlight=False, soft_wrap=True)
        print(result.path)  # the last line: the file, for scripts
    return 0


def _zoo_publish(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.zoo.publish import publish

    entry = publish(
        args.run_dir,
        name=args.name,
        registry=args.registry,
        files_dir=args.files_dir,
        base_url=args.base_url,
        backbone=args.backbone,
        dataset=args.dataset,
        cards_dir=args.cards_dir,
        recipe=args.recipe,
    )
    console.print(
        f"published {entry.name} (backbone {entry.backbone}, {entry.method['type']}, {entry.dataset['name']}): "
        f"{entry.urls[0]}, sha256 {entry.sha256}, {entry.size:,} bytes; card {entry.card}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def _convert_original(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.zoo.convert import convert_original

    path = convert_original(
        args.checkpoint,
        args.out,
        quick_gelu=args.quick_gelu,
        backbone_output=args.backbone_out,
        backbone_pretrained=args.backbone_pretrained,
    )
    console.print(f"wrote adapter checkpoint {path}", highlight=False, soft_wrap=True)
    if args.backbone_out:
        console.print(f"wrote backbone weights {args.backbone_out}", highlight=False, soft_wrap=True)
    return 0


def _export_backbone(args: argparse.Namespace, console: Console) -> int:
    import yaml

    from harma_zoo.engine.recipe import load_recipe
    from harma_zoo.zoo.export import export_backbone

    cfg = load_recipe(recipe_path(args.recipe), args.cfg_options)
    entry = export_backbone(cfg, args.checkpoint, args.out)
    size = entry.pop("size")
    console.print(f"wrote {args.out} ({size:,} bytes); its backbones.yaml entry:", highlight=False, soft_wrap=True)
    print(yaml.safe_dump([{"name": "NAME", **entry, "license": "LICENSE", "citation": "CITATION"}], sort_keys=False))
    return 0


def _add_zoo_commands(commands: Any) -> None:
    registry_help = "registry folder (default: $HARMA_ZOO_REGISTRY, else the project's registry/)"
    listing = commands.add_parser("list", help="the zoo's backbones, published checkpoints and recipes")
    listing.add_argument("what", nargs="?", choices=["all", *ZOO_LISTS], default="all")
    listing.add_argument("--family", help="backbone family, e.g. open_clip or hf_blip")
    listing.add_argument("--method", help="method name, e.g. harma (checkpoints, recipes)")
    listing.add_argument("--dataset", help="dataset name, e.g. rsicd (checkpoints, recipes)")
    listing.add_argument("--backbone", help="backbone entry name")
    listing.add_argument("--filter", help="case-insensitive substring anywhere in the row")
    listing.add_argument("--json", action="store_true", help="print JSON instead of tables")
    listing.add_argument("--registry", help=registry_help)
    listing.set_defaults(run=_zoo_list)

    fetching = commands.add_parser("fetch", help="download a backbone's or checkpoint's file into the cache (sha256)")
    fetching.add_argument("name", help="a backbone or checkpoint entry of the registry")
    fetching.add_argument("--cache-dir", help="download folder (default $HARMA_ZOO_HOME/downloads)")
    fetching.add_argument("--json", action="store_true", help="print the result as JSON")
    fetching.add_argument("--registry", help=registry_help)
    fetching.set_defaults(run=_zoo_fetch)

    publishing = commands.add_parser("publish", help="add a run's best.safetensors to the registry, with its card")
    publishing.add_argument("run_dir", help="training work dir holding best.safetensors (or the file itself)")
    publishing.add_argument("--name", help="entry name (default: the recipe's name); re-publishing replaces it")
    publishing.add_argument("--files-dir", help="where the file is copied (default: zoo_files/ at the project root)")
    publishing.add_argument("--base-url", help="public folder of the files: the entry's URL is BASE_URL/FILE")
    publishing.add_argument("--backbone", help="backbone entry (default: the one matching the checkpoint's config)")
    publishing.add_argument("--dataset", help="dataset name (default: from the run's recipe)")
    publishing.add_argument("--cards-dir", help="where the model card goes (default: model_cards/ at the project root)")
    publishing.add_argument("--registry", help=registry_help)
    publishing.add_argument("--recipe", help="the recipe in recipes/ that reproduces the run (bench runs)")
    publishing.set_defaults(run=_zoo_publish)

    convert = commands.add_parser("convert-original", help="convert a HarMA reference-code checkpoint to an adapter")
    convert.add_argument("checkpoint", help="the authors' torch.save({'model': ..., 'config': ...}) file")
    convert.add_argument("out", help="adapter checkpoint to write (.safetensors)")
    convert.add_argument("--quick-gelu", action="store_true", help="GeoRSCLIP-based (ViT-B-32-quickgelu); else LAION")
    convert.add_argument("--backbone-out", help="also write the checkpoint's backbone weights here (.safetensors)")
    convert.add_argument("--backbone-pretrained", help="the backbone source the adapter names (tag or weights file)")
    convert.set_defaults(run=_convert_original)

    export = commands.add_parser("export-backbone", help="write a `full` run's backbone as a zoo weights file")
    export.add_argument("recipe", help="the recipe the checkpoint was trained with (file or name in recipes/)")
    export.add_argument("--checkpoint", required=True, help="the run's checkpoint (best.safetensors)")
    export.add_argument("--out", required=True, help="weights file to write, e.g. zoo_files/NAME.safetensors")
    export.add_argument("--cfg-options", nargs="+", action=DictAction, help="override recipe values: key.sub=value")
    export.set_defaults(run=_export_backbone)


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


    bench = commands.add_parser(
        "bench", help="train and evaluate recipes x methods; leaderboard (md, csv, json), plot and model cards"
    )
    bench.add_argument("--recipes", nargs="+", help="recipe files or names in recipes/")
    bench.add_argument(
        "--methods", nargs="+", help="method pieces of recipes/_base_/methods/, or `recipe` (each recipe's own)"
    )
    bench.add_argument("--backbones", nargs="+", help="backbone pieces of recipes/_base_/backbones/ (x --datasets)")
    bench.add_argument("--datasets", nargs="+", help="dataset pieces of recipes/_base_/datasets/ (x --backbones)")
    bench.add_argument("--schedule", help="schedule piece for --backbones x --datasets (default: reference)")
    bench.add_argument(
        "--preset", help=f"a built-in matrix: {', '.join(PRESETS)} (demo is the default when nothing is chosen)"
    )
    bench.add_argument("--out", default="results", help="output folder: runs/, cards/, leaderboard.*")
    bench.add_argument("--cfg-options", nargs="+", action=DictAction, help="override values of every run: key=value")
    bench.set_defaults(run=_bench)
    _add_zoo_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.run(args, console)
    except (KeyError, ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
