"""``bench``: train and evaluate recipes x methods, then rank them (library: ``harma_zoo.bench``)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from harma_zoo.bench.presets import PRESETS
from harma_zoo.cli.options import add_cfg_options


def _bench(args: argparse.Namespace, console: Console) -> int:
    from harma_zoo.bench.runs import run_bench

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
        nproc_per_run=args.nproc_per_run,
        parallel_runs=args.parallel_runs,
        seeds=args.seeds,
        tune=args.tune,
    )
    return 1 if outcome["failed"] else 0


def add_commands(commands: Any) -> None:
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
    bench.add_argument(
        "--nproc-per-run",
        type=int,
        default=1,
        metavar="N",
        help="train each run on N processes under torchrun (one GPU each), with the same global batch",
    )
    bench.add_argument(
        "--parallel-runs",
        type=int,
        default=1,
        metavar="K",
        help="do K runs side by side, each in its own process on its own GPUs (CUDA_VISIBLE_DEVICES)",
    )
    bench.add_argument(
        "--seeds", nargs="+", type=int, metavar="SEED", help="run each cell once per seed; the leaderboard pools them"
    )
    bench.add_argument(
        "--tune",
        action="store_true",
        help="run each recipe's learning-rate grid (its `tuning` section) instead; writes the chosen rates",
    )
    add_cfg_options(bench, help="override values of every run: key=value")
    bench.set_defaults(run=_bench)
