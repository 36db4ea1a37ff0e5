"""``index``, ``search``, ``serve``: archive search with an adapter (library: ``harma_zoo.search``)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from harma_zoo.cli.options import REGISTRY_HELP

_SHOWN = 20
_EXTRA = ("faiss", "rasterio", "starlette", "uvicorn")


def _require_search_extra() -> None:
    """The search commands need the ``search`` extra; without it, one line says how to get it."""
    import importlib.util

    missing = [name for name in _EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"archive search needs {', '.join(missing)}: pip install 'harma-zoo[search]'")


def _index(args: argparse.Namespace, console: Console) -> int:
    _require_search_extra()
    from harma_zoo.fileio import atomic_write
    from harma_zoo.search import IndexOptions, index_archive

    options = None
    if args.index is not None or args.nlist is not None or args.pq is not None:
        options = IndexOptions(args.index or "ivfpq", args.nlist or 1024, args.pq or 16)
    report = index_archive(
        args.archive,
        args.model,
        args.out,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        chip=args.chip,
        overlap=args.overlap,
        geo=not args.no_geo,
        strict=args.strict,
        options=options,
        shard_size=args.shard_size,
        registry=args.registry,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, process 0 reports for all
        return 0
    console.print(report.summary(), highlight=False, soft_wrap=True)
    if report.skipped:
        listing = Path(args.out) / "skipped.txt"
        text = "".join(f"{label}\t{error}\n" for label, error in report.skipped)
        atomic_write(listing, lambda temporary: temporary.write_text(text, encoding="utf-8"))
        for _, error in report.skipped[:_SHOWN]:  # each error names its file (and chip)
            console.print(Text.assemble(("skipped:", "yellow"), f" {error}"), highlight=False, soft_wrap=True)
        more = len(report.skipped) - _SHOWN
        console.print(
            f"{f'and {more} more; ' if more > 0 else ''}all skipped items are listed in {listing}", highlight=False
        )
    return 0


def _search(args: argparse.Namespace, console: Console) -> int:
    _require_search_extra()
    from rich.table import Table

    from harma_zoo.fileio import atomic_write
    from harma_zoo.search import SearchIndex, hits_geojson

    if (args.text is None) == (args.image is None):
        raise ValueError('give a sentence ("many planes ...") or --image FILE to search by, not both and not neither')
    index = SearchIndex(args.index, device=args.device, nprobe=args.nprobe)
    hits = index.search(args.text, image=args.image, k=args.k)
    label = args.text if args.text is not None else f"image {args.image}"
    if args.geojson:
        collection = hits_geojson(hits, label)
        atomic_write(Path(args.geojson), lambda temporary: temporary.write_text(json.dumps(collection, indent=1)))
    if args.json:
        print(json.dumps([hit.as_dict() for hit in hits], indent=2), file=args.stdout)
        return 0
    table = Table(title=f"{label!r} in {args.index} ({len(index):,} items)", title_justify="left")
    for column in ("rank", "score", "path", "window"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left", overflow="fold")
    for hit in hits:
        window = "" if hit.window is None else "col {}, row {}, {}x{}".format(*hit.window)
        table.add_row(str(hit.rank), f"{hit.score:.4f}", _shown_path(hit.path), window)
    console.print(table)
    if args.geojson:
        console.print(f"wrote {args.geojson} ({sum(h.footprint is not None for h in hits)} footprints, EPSG:4326)")
    return 0


def _shown_path(path: str) -> str:
    """A path as short as it reads unambiguously: relative to here where that is shorter."""
    relative = os.path.relpath(path)
    return relative if len(relative) < len(path) else path


def _serve(args: argparse.Namespace, console: Console) -> int:
    _require_search_extra()
    from harma_zoo.search.server import serve

    serve(
        args.index,
        args.host,
        args.port,
        device=args.device,
        nprobe=args.nprobe,
        announce=lambda line: print(line, flush=True),
    )
    return 0


def add_commands(commands: Any) -> None:
    index = commands.add_parser(
        "index", help="embed an image archive or GeoTIFF scenes into a search index (incremental, resumable)"
    )
    index.add_argument(
        "archive", help="a folder (recursive: JPEG, PNG, TIFF), a list file (one path a line) or a GeoTIFF"
    )
    index.add_argument("--model", required=True, help="a published adapter's zoo name, or an adapter file")
    index.add_argument("--out", required=True, help="the index folder (created; an existing index is updated)")
    index.add_argument("--device", help="where the model runs (cpu, cuda, cuda:1); default: a GPU if there is one")
    index.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    index.add_argument("--workers", type=int, help="DataLoader processes decoding images (default: min(4, CPUs))")
    index.add_argument("--chip", type=int, default=224, help="chip size in pixels for TIFF scenes (default 224)")
    index.add_argument("--overlap", type=int, default=0, help="pixels that neighbouring chips share (default 0)")
    index.add_argument("--no-geo", action="store_true", help="index TIFF scenes without CRS and footprints")
    index.add_argument("--strict", action="store_true", help="an image that does not decode is an error, not skipped")
    index.add_argument("--index", choices=("flat", "ivfpq"), help="FAISS index: flat (exact, default) or ivfpq")
    index.add_argument("--nlist", type=int, help="IVF-PQ: inverted lists (default 1024)")
    index.add_argument(
        "--pq", type=int, help="IVF-PQ: sub-quantizers, bytes per vector; divides the dimension (default 16)"
    )
    index.add_argument("--shard-size", type=int, default=4096, help="items per committed shard (default 4096)")
    index.add_argument("--registry", help=REGISTRY_HELP)
    index.set_defaults(run=_index)

    search = commands.add_parser("search", help="search an index by a sentence or an image")
    search.add_argument("index", help="the index folder")
    search.add_argument("text", nargs="?", help='what to find, e.g. "many planes parked next to a long terminal"')
    search.add_argument("--image", help="search by this image file instead (image to image)")
    search.add_argument("-k", type=int, default=20, help="how many results (default 20)")
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    search.add_argument("--geojson", help="also write the results to this GeoJSON file (footprints in EPSG:4326)")
    search.add_argument("--device", help="where the model runs for the query")
    search.add_argument("--nprobe", type=int, default=16, help="IVF-PQ: inverted lists visited (default 16)")
    search.set_defaults(run=_search)

    serve = commands.add_parser("serve", help="a local web page to search an index")
    serve.add_argument("index", help="the index folder")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    serve.add_argument("--device", help="where the model runs for queries")
    serve.add_argument("--nprobe", type=int, default=16, help="IVF-PQ: inverted lists visited (default 16)")
    serve.set_defaults(run=_serve)
