"""``list``, ``fetch``, ``publish``, ``convert-original``, ``registry-schema``: the zoo.

The library behind them: ``harma_zoo.hub`` and ``harma_zoo.zoo``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harma_zoo.cli.options import REGISTRY_HELP

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
    from harma_zoo.engine.console import print_table
    from harma_zoo.hub.index import load_index
    from harma_zoo.zoo.catalog import Filters

    index = load_index(args.registry)
    filters = Filters(args.family, args.method, args.dataset, args.backbone, args.filter)
    kinds = ZOO_LISTS if args.what == "all" else (args.what,)
    if args.what == "all" and (args.method or args.dataset):
        kinds = ("checkpoints", "recipes")  # backbones have neither
    found = {what: _zoo_rows(what, index, filters) for what in kinds}
    if args.json:
        print(json.dumps(found if args.what == "all" else found[args.what], indent=2, default=str), file=args.stdout)
        return 0
    for what, rows in found.items():
        if rows or args.what != "all":
            print_table(console, _zoo_table(what, rows))
        if what == "checkpoints" and not index.checkpoints:
            console.print("no checkpoints published yet: `harma-zoo publish RUN_DIR` adds one", highlight=False)
    return 0


def _zoo_fetch(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.hub.entries import fetch_entry
    from harma_zoo.hub.index import load_index

    index = load_index(args.registry)
    result = fetch_entry(
        index, args.name, cache_dir=args.cache_dir, progress=not args.json, force=args.force, timeout=args.timeout
    )
    if args.json:
        document = {**vars(result), "path": str(result.path) if result.path else None}
        print(json.dumps(document, indent=2, default=str), file=args.stdout)
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


def _registry_schema(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.hub.index import default_registry, display_path
    from harma_zoo.hub.schema import stale_schemas, write_schemas

    registry = default_registry() if args.registry is None else Path(args.registry)
    if args.check:
        stale = stale_schemas(registry)
        for path in stale:
            console.print(f"{display_path(path)} is out of date: run `harma-zoo registry-schema`", highlight=False)
        return 1 if stale else 0
    for path in write_schemas(registry):
        console.print(f"wrote {display_path(path)}", highlight=False)
    return 0


def add_commands(commands: Any) -> None:
    listing = commands.add_parser("list", help="the zoo's backbones, published checkpoints and recipes")
    listing.add_argument("what", nargs="?", choices=["all", *ZOO_LISTS], default="all")
    listing.add_argument("--family", help="backbone family, e.g. open_clip or hf_blip")
    listing.add_argument("--method", help="method name, e.g. harma (checkpoints, recipes)")
    listing.add_argument("--dataset", help="dataset name, e.g. rsicd (checkpoints, recipes)")
    listing.add_argument("--backbone", help="backbone entry name")
    listing.add_argument("--filter", help="case-insensitive substring anywhere in the row")
    listing.add_argument("--json", action="store_true", help="print JSON instead of tables")
    listing.add_argument("--registry", help=REGISTRY_HELP)
    listing.set_defaults(run=_zoo_list)

    fetching = commands.add_parser(
        "fetch", help="download a backbone's weights or a checkpoint's file into the cache (sha256-checked)"
    )
    fetching.add_argument("name", help="a backbone or checkpoint entry of the registry")
    fetching.add_argument("--cache-dir", help="download folder (default $HARMA_ZOO_HOME/downloads)")
    fetching.add_argument("--json", action="store_true", help="print the result as JSON")
    fetching.add_argument("--force", action="store_true", help="download again, even when the cache holds the file")
    fetching.add_argument(
        "--timeout", type=float, default=30.0, help="seconds a silent server is waited for, per try (default 30)"
    )
    fetching.add_argument("--registry", help=REGISTRY_HELP)
    fetching.set_defaults(run=_zoo_fetch)

    publishing = commands.add_parser("publish", help="add a run's best.safetensors to the registry, with its card")
    publishing.add_argument("run_dir", help="training work dir holding best.safetensors (or the file itself)")
    publishing.add_argument("--name", help="entry name (default: the recipe's name); re-publishing replaces it")
    publishing.add_argument("--files-dir", help="where the file is copied (default: zoo_files/ at the project root)")
    publishing.add_argument("--base-url", help="public folder of the files: the entry's URL is BASE_URL/FILE")
    publishing.add_argument("--backbone", help="backbone entry (default: the one matching the checkpoint's config)")
    publishing.add_argument("--dataset", help="dataset name (default: from the run's recipe)")
    publishing.add_argument("--cards-dir", help="where the model card goes (default: model_cards/ at the project root)")
    publishing.add_argument("--registry", help=REGISTRY_HELP)
    publishing.add_argument("--recipe", help="the recipe in recipes/ that reproduces the run (bench runs)")
    publishing.set_defaults(run=_zoo_publish)

    convert = commands.add_parser("convert-original", help="convert a HarMA reference-code checkpoint to an adapter")
    convert.add_argument("checkpoint", help="the authors' torch.save({'model': ..., 'config': ...}) file")
    convert.add_argument("out", help="adapter checkpoint to write (.safetensors)")
    convert.add_argument("--quick-gelu", action="store_true", help="GeoRSCLIP-based (ViT-B-32-quickgelu); else LAION")
    convert.add_argument("--backbone-out", help="also write the checkpoint's backbone weights here (.safetensors)")
    convert.add_argument("--backbone-pretrained", help="the backbone source the adapter names (tag or weights file)")
    convert.set_defaults(run=_convert_original)

    schema = commands.add_parser("registry-schema", help="write registry/schema/*.json (for editors) from the models")
    schema.add_argument("--check", action="store_true", help="write nothing; exit 1 when a schema file is out of date")
    schema.add_argument("--registry", help=REGISTRY_HELP)
    schema.set_defaults(run=_registry_schema)
