"""harma-zoo CPU benchmarks, side by side in one run: ``python benchmarks/run.py --out results/bench.json``.

1. One training step per method on OpenCLIP ViT-B-32 (random weights): median time and peak-RSS growth,
   against ``full``.
2. ``harma`` against ``full`` and against the floor of any method inside a frozen backbone (frozen
   forward + input-gradient backward), the three workers alive at once and their steps interleaved.
3. The paper's batch (428) in chunks of 32 against an unchunked batch-32 step: memory and time per sample.
4. Encoding throughput with ``harma`` attached against the bare backbone.
5. Evaluation at RSITMD / RSICD / NWPU-Captions sizes: ``retrieval_metrics`` against a brute-force
   full-matrix argsort and against the similarity products alone (the machine's matrix-multiply time).
6. Start-up of the command line: wall time of ``harma-zoo --help`` and ``--version`` (target: under a second).
7. Archive search: indexing throughput against bare encoding (goal >= 0.9x), query latency p50/p95 of
   exact and IVF-PQ indexes over 100k and 1M synthetic vectors with IVF-PQ's recall@10 and bytes per
   vector, and ``harma-zoo serve`` under 32 concurrent clients for 20 s on 127.0.0.1.

Every measurement runs in its own subprocess (``python -m benchmarks.<module>``) so that peak RSS
(``ru_maxrss``) is that measurement's alone. ``--quick`` shrinks everything for a fast check. The JSON's
``goals`` lists each goal of issue 13 with its figure, its limit and whether it is met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/run.py` from anywhere

from benchmarks._proc import SteppingWorker, run_worker  # noqa: E402
from harma_zoo.fileio import atomic_write  # noqa: E402

BACKBONE = {"type": "open_clip", "arch": "ViT-B-32"}
METHODS = ("frozen", "harma", "lora", "adapter", "full")
# Before/after of a speed-up: these methods are also timed without it (the row's name says so).
WITHOUT_ATTENTION_LAYOUT = ("harma", "full")
# (name, images); five captions per image.
EVAL_SIZES = (("RSITMD", 452), ("RSICD", 1093), ("NWPU-Captions", 31500))
BYTES_PER_GIB = 2**30
# The interleaved comparison: the floor of any method inside a frozen backbone, HarMA, full fine-tuning.
INTERLEAVED = ("floor", "harma", "full")
PAPER_BATCH = 428
# Issue 13's goals: (key, what, limit); a figure meets its goal when it is at most the limit.
GOALS = (
    ("chunked_memory", "peak memory growth, harma batch 428 in chunks of 32 / unchunked batch 32", 1.3),
    ("chunked_time_per_sample", "time per sample, harma batch 428 in chunks of 32 / unchunked batch 32", 1.4),
    ("harma_vs_full_time", "step time, harma / full (median of interleaved steps)", 0.70),
    ("harma_vs_full_memory", "peak memory growth, harma / full", 0.55),
    ("evaluation_vs_matmul", "NWPU-Captions evaluation time / its similarity products alone", 1.5),
    # "memory as today or less": against the committed run's figure, with 5% for run-to-run RSS noise
    ("evaluation_memory", "NWPU-Captions evaluation peak RSS growth / the committed figure", 1.05),
)
PARTS = ("train", "interleaved", "chunked", "encoding", "evaluation", "cli", "search")
COMMITTED = Path(__file__).resolve().parent / "results" / "cpu-2-cores.json"  # "memory as today"


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def bench_train(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    settings = {
        "backbone": BACKBONE,
        "batch": args.batch,
        "image_size": 224,
        "warmup": args.warmup,
        "steps": args.steps,
        "threads": args.threads,
    }
    rows = {}
    for method in METHODS:
        console.log(f"train step: {method}")
        rows[method] = run_worker("benchmarks.train_step", {**settings, "method": method})
    for method in WITHOUT_ATTENTION_LAYOUT:
        console.log(f"train step: {method}, before the attention-layout change")
        rows[f"{method} (before)"] = run_worker(
            "benchmarks.train_step", {**settings, "method": method, "attention_layout": False}
        )
    if args.compile:
        console.log("train step: harma + torch.compile")
        rows["harma+compile"] = run_worker("benchmarks.train_step", {**settings, "method": "harma", "compile": True})
    full = rows["full"]
    table = Table(
        title=f"Training step, OpenCLIP ViT-B-32 (random weights), batch {args.batch}, 224 px, "
        f"{args.threads or torch.get_num_threads()} CPU threads; median of {args.steps} after {args.warmup} warm-up"
    )
    for column in ("method", "trainable params", "step s", "x full", "peak RSS growth MiB", "x full"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method, row in rows.items():
        if "error" in row:
            table.add_row(method, f"[red]{row['error']}[/red]", "", "", "", "")
            continue
        row["time_ratio_vs_full"] = _ratio(row["step_s_median"], full.get("step_s_median"))
        row["rss_ratio_vs_full"] = _ratio(row["peak_rss_growth_mib"], full.get("peak_rss_growth_mib"))
        table.add_row(
            method + (" (fwd, no_grad)" if method == "frozen" else ""),
            f"{row['trainable_params']:,}",
            _fmt(row["step_s_median"], ".2f"),
            _fmt(row["time_ratio_vs_full"], ".2f"),
            _fmt(row["peak_rss_growth_mib"], ",.0f"),
            _fmt(row["rss_ratio_vs_full"], ".2f"),
        )
    console.print(table)
    console.print(
        "Peak memory = growth of the process's ru_maxrss over its value after building model, optimizer and "
        "inputs (activations + gradients + AdamW state); one process per method. '(before)': without "
        "harma_zoo.backbones.attention_layout (attention inputs passed on as they come)."
    )
    speedups = {
        method: _ratio(rows[f"{method} (before)"].get("step_s_median"), rows[method].get("step_s_median"))
        for method in WITHOUT_ATTENTION_LAYOUT
    }
    console.print(
        "Attention-layout speed-up (step time before / after): "
        + ", ".join(f"{method} {_fmt(value, '.2f')}x" for method, value in speedups.items())
    )
    return {"settings": settings, "results": rows, "attention_layout_speedup": speedups}


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_interleaved(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """floor, harma and full alive at once; each round steps each of them, in a rotating order."""
    settings = {"backbone": BACKBONE, "batch": args.batch, "image_size": 224, "threads": args.threads}
    rounds = args.warmup + args.interleaved_steps
    console.log(f"interleaved steps: {', '.join(INTERLEAVED)}, {args.warmup} warm-up + {args.interleaved_steps} timed")
    times: dict[str, list[float | None]] = {method: [] for method in INTERLEAVED}
    with contextlib.ExitStack() as stack:
        workers = {
            method: stack.enter_context(SteppingWorker("benchmarks.train_step", {**settings, "method": method}))
            for method in INTERLEAVED
        }
        for index in range(rounds):
            order = INTERLEAVED[index % 3 :] + INTERLEAVED[: index % 3]
            for method in order:
                times[method].append(workers[method].step())
        results = {method: worker.finish() for method, worker in workers.items()}
    timed_steps = {method: [t for t in values[args.warmup :] if t is not None] for method, values in times.items()}
    for method, result in results.items():
        result["step_s"] = timed_steps[method]
        result.update({f"step_s_{key}": value for key, value in _spread(timed_steps[method]).items()})
    harma, full, floor = timed_steps["harma"], timed_steps["full"], timed_steps["floor"]
    per_round = [h / f for h, f in zip(harma, full, strict=False)]
    comparison = {
        "time_ratio_harma_vs_full": _ratio(results["harma"].get("step_s_median"), results["full"].get("step_s_median")),
        "time_ratio_per_round": _spread(per_round),
        "memory_ratio_harma_vs_full": _ratio(
            results["harma"].get("peak_rss_growth_mib"), results["full"].get("peak_rss_growth_mib")
        ),
        "harma_above_floor": _ratio(results["harma"].get("step_s_median"), results["floor"].get("step_s_median")),
        "floor_vs_full": _ratio(results["floor"].get("step_s_median"), results["full"].get("step_s_median")),
        "floor_per_round_vs_full": _spread([a / b for a, b in zip(floor, full, strict=False)]),
    }
    table = Table(
        title=f"Interleaved steps, ViT-B-32, batch {args.batch}: {args.interleaved_steps} timed rounds after "
        f"{args.warmup} warm-up, each round stepping every worker (rotating order)"
    )
    for column in ("step", "median s", "min s", "max s", "peak RSS growth MiB"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for method, result in results.items():
        if "error" in result:
            table.add_row(method, f"[red]{result['error']}[/red]", "", "", "")
            continue
        table.add_row(
            "floor (frozen fwd + input-grad bwd)" if method == "floor" else method,
            _fmt(result["step_s_median"], ".2f"),
            _fmt(result["step_s_min"], ".2f"),
            _fmt(result["step_s_max"], ".2f"),
            _fmt(result["peak_rss_growth_mib"], ",.0f"),
        )
    console.print(table)
    spread = comparison["time_ratio_per_round"]
    console.print(
        f"harma / full: time {_fmt(comparison['time_ratio_harma_vs_full'], '.2f')} (per round "
        f"{_fmt(spread['min'], '.2f')}-{_fmt(spread['max'], '.2f')}), memory "
        f"{_fmt(comparison['memory_ratio_harma_vs_full'], '.2f')}; harma / floor "
        f"{_fmt(comparison['harma_above_floor'], '.2f')}, floor / full {_fmt(comparison['floor_vs_full'], '.2f')}"
    )
    return {"settings": {**settings, "warmup": args.warmup, "steps": args.interleaved_steps}, "results": results,
            "comparison": comparison}  # fmt: skip


def bench_chunked(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """A batch of ``--paper-batch`` rows in chunks of ``--chunk`` against an unchunked step of ``--chunk`` rows."""
    settings = {"backbone": BACKBONE, "method": "harma", "image_size": 224, "threads": args.threads}
    console.log(f"train step: harma, batch {args.chunk} unchunked")
    small = run_worker(
        "benchmarks.train_step", {**settings, "batch": args.chunk, "warmup": args.warmup, "steps": args.steps}
    )
    console.log(f"train step: harma, batch {args.paper_batch} in chunks of {args.chunk}")
    chunked = run_worker(
        "benchmarks.train_step",
        {**settings, "batch": args.paper_batch, "chunk_size": args.chunk, "warmup": 1, "steps": args.chunked_steps},
    )
    comparison = {
        "memory_ratio": _ratio(chunked.get("peak_rss_growth_mib"), small.get("peak_rss_growth_mib")),
        "time_per_sample_ratio": _ratio(
            chunked["step_s_median"] / args.paper_batch if "step_s_median" in chunked else None,
            small["step_s_median"] / args.chunk if "step_s_median" in small else None,
        ),
    }
    table = Table(
        title=f"The paper's batch in chunks: harma on ViT-B-32, {args.paper_batch} rows in chunks of {args.chunk}"
    )
    for column in ("step", "step s", "s per sample", "peak RSS growth MiB"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for name, row, batch in (
        (f"batch {args.chunk}, unchunked", small, args.chunk),
        (f"batch {args.paper_batch}, chunk {args.chunk}", chunked, args.paper_batch),
    ):
        if "error" in row:
            table.add_row(name, f"[red]{row['error']}[/red]", "", "")
            continue
        seconds = row["step_s_median"]
        table.add_row(name, f"{seconds:.2f}", f"{seconds / batch:.3f}", f"{row['peak_rss_growth_mib']:,.0f}")
    console.print(table)
    console.print(
        f"chunked / unchunked: memory {_fmt(comparison['memory_ratio'], '.2f')}, time per sample "
        f"{_fmt(comparison['time_per_sample_ratio'], '.2f')}"
    )
    return {"settings": {**settings, "chunk": args.chunk, "paper_batch": args.paper_batch},
            "results": {"unchunked": small, "chunked": chunked}, "comparison": comparison}  # fmt: skip


def bench_encoding(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    console.log("encoding throughput")
    settings = {
        "backbone": BACKBONE,
        "method": "harma",
        "batch": args.batch,
        "image_size": 224,
        "warmup": 1,
        "repeats": args.steps,
        "threads": args.threads,
    }
    result = run_worker("benchmarks.encoding", settings)
    table = Table(title=f"Encoding throughput, eval mode, no_grad, batch {args.batch} (median of {args.steps})")
    for column in ("model", "images/s", "x bare", "captions/s", "x bare"):
        table.add_column(column, justify="left" if column == "model" else "right")
    if "error" in result:
        table.add_row(f"[red]{result['error']}[/red]", "", "", "", "")
    else:
        bare = result["throughput"]["bare"]
        for name, row in result["throughput"].items():
            row["images_ratio_vs_bare"] = _ratio(row["images_per_s"], bare["images_per_s"])
            row["captions_ratio_vs_bare"] = _ratio(row["captions_per_s"], bare["captions_per_s"])
            table.add_row(
                "bare backbone" if name == "bare" else f"+ {name}",
                f"{row['images_per_s']:.1f}",
                f"{row['images_ratio_vs_bare']:.2f}",
                f"{row['captions_per_s']:.1f}",
                f"{row['captions_ratio_vs_bare']:.2f}",
            )
    console.print(table)
    return {"settings": settings, "results": result}


def _fits(images: int, available_bytes: int) -> tuple[bool, float]:
    """Whether brute force fits: float32 scores + int64 order + int64 positions per entry, within half of RAM."""
    need = images * images * 5 * (4 + 8 + 8)
    return need < available_bytes // 2, need / BYTES_PER_GIB


def bench_evaluation(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    rows = []
    for name, images in EVAL_SIZES:
        dim = args.fallback_dim if args.quick and images > 10_000 else args.dim
        console.log(f"evaluation: {name} retrieval_metrics, D={dim}")
        chunked = run_worker(
            "benchmarks.evaluation", {"images": images, "dim": dim, "how": "chunked"}, timeout=args.eval_timeout
        )
        note = ""
        if "error" in chunked and "timed out" in chunked["error"] and dim > args.fallback_dim:
            note = f"D={dim} timed out after {args.eval_timeout:.0f} s; rerun at D={args.fallback_dim}"
            dim = args.fallback_dim
            console.log(f"evaluation: {name} {note}")
            chunked = run_worker(
                "benchmarks.evaluation", {"images": images, "dim": dim, "how": "chunked"}, timeout=args.eval_timeout
            )
        console.log(f"evaluation: {name} similarity products alone (matrix-multiply limit), D={dim}")
        matmul = run_worker("benchmarks.evaluation", {"images": images, "dim": dim, "how": "matmul"})
        fits, need_gib = _fits(images, available)
        if fits:
            console.log(f"evaluation: {name} brute force, D={dim}")
            brute = run_worker("benchmarks.evaluation", {"images": images, "dim": dim, "how": "brute"})
        else:
            brute = {
                "short": f"does not fit ({need_gib:,.0f} GiB)",
                "error": f"does not fit: needs {need_gib:,.1f} GiB (full float32 matrix alone "
                f"{images * images * 5 * 4 / 1e9:,.1f} GB), {available / BYTES_PER_GIB:.1f} GiB available",
            }
        rows.append(
            {
                "dataset": name,
                "images": images,
                "captions": images * 5,
                "dim": dim,
                "note": note,
                "retrieval_metrics": chunked,
                "matmul": matmul,
                "time_ratio_vs_matmul": _ratio(chunked.get("seconds"), matmul.get("seconds")),
                "brute_force": brute,
                "same_mR": ("mR" in chunked and "mR" in brute and abs(chunked["mR"] - brute["mR"]) < 1e-9) or None,
            }
        )
    table = Table(title="Evaluation on synthetic unit embeddings (5 captions per image), one process each")
    for column in (
        "size",
        "D",
        "retrieval_metrics s",
        "peak RSS MiB",
        "products alone s",
        "time x products",
        "brute force s",
        "peak RSS MiB",
        "time x brute",
        "RSS x brute",
        "same mR",
    ):
        table.add_column(column, justify="left" if column == "size" else "right")
    for row in rows:
        chunked, brute = row["retrieval_metrics"], row["brute_force"]
        size = f"{row['dataset']} {row['images']:,} x {row['captions']:,}"
        if "error" in chunked:
            table.add_row(size, str(row["dim"]), f"[red]{chunked['error']}[/red]", *[""] * 8)
            continue
        if "error" in brute:
            brute_cells = (f"[yellow]{brute.get('short', brute['error'])}[/yellow]", "", "", "", "-")
        else:
            row["time_ratio_vs_brute"] = _ratio(chunked["seconds"], brute["seconds"])
            row["rss_ratio_vs_brute"] = _ratio(chunked["peak_rss_growth_mib"], brute["peak_rss_growth_mib"])
            brute_cells = (
                f"{brute['seconds']:.2f}",
                f"{brute['peak_rss_growth_mib']:,.0f}",
                _fmt(row["time_ratio_vs_brute"], ".2f"),
                _fmt(row["rss_ratio_vs_brute"], ".2f"),
                "yes" if row["same_mR"] else "[red]NO[/red]",
            )
        matmul = row["matmul"]
        matmul_cells = (
            (f"[red]{matmul['error']}[/red]", "-")
            if "error" in matmul
            else (f"{matmul['seconds']:.2f}", _fmt(row["time_ratio_vs_matmul"], ".2f"))
        )
        table.add_row(
            size,
            str(row["dim"]),
            f"{chunked['seconds']:.2f}",
            f"{chunked['peak_rss_growth_mib']:,.0f}",
            *matmul_cells,
            *brute_cells,
        )
    console.print(table)
    for row in rows:
        if row["note"]:
            console.print(f"{row['dataset']}: {row['note']}")
    console.print(
        "Peak RSS = growth of ru_maxrss over its value once the embeddings exist. Products alone = every "
        "image-caption dot product, in the blocks retrieval_metrics uses, and nothing else: the floor of any "
        "exact evaluation on this machine."
    )
    return {"results": rows}


def _console_script() -> list[str]:
    """The ``harma-zoo`` entry point installed beside this interpreter, else ``python -m harma_zoo.cli``."""
    script = Path(sys.executable).with_name("harma-zoo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "harma_zoo.cli"]


def bench_cli(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Wall time of ``harma-zoo --help`` / ``--version``, each a fresh process (what a user waits for)."""
    command = _console_script()
    repeats = 3 if args.quick else 10
    rows = {}
    for flag in ("--help", "--version"):
        console.log(f"command line: harma-zoo {flag}")
        subprocess.run([*command, flag], capture_output=True, check=True)  # warm the file cache
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([*command, flag], capture_output=True, check=True)
            seconds.append(time.perf_counter() - started)
        rows[flag] = {"median_s": statistics.median(seconds), "max_s": max(seconds), "runs": repeats}
    probe = (
        "import sys; from harma_zoo.cli import build_parser; build_parser().format_help(); "
        "print('torch' in sys.modules)"
    )
    imports_torch = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    table = Table(title=f"Command-line start-up, a fresh process each (median of {repeats}, after one untimed run)")
    for column in ("command", "median s", "max s", "under 1 s"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for flag, row in rows.items():
        table.add_row(f"harma-zoo {flag}", f"{row['median_s']:.2f}", f"{row['max_s']:.2f}",
                      "yes" if row["median_s"] < 1.0 else "[red]no[/red]")  # fmt: skip
    console.print(table)
    console.print(f"building the parser imports torch: {imports_torch.stdout.strip()}")
    return {"command": command, "results": rows, "parser_imports_torch": imports_torch.stdout.strip() == "True"}


def bench_search(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    data = os.environ.get("HARMA_ZOO_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    quick = args.quick
    with tempfile.TemporaryDirectory(prefix="harma-zoo-bench-search-") as tmp:
        indexing = {}
        for model, images in (("tiny", 128 if quick else 1966), ("vit-b-32", 32 if quick else 512)):
            console.log(f"search: indexing throughput, {model}, {images} images")
            settings = {"model": model, "images": images, "batch": 64, "workers": args.search_workers,
                        "data": data, "out": str(Path(tmp) / model), "threads": args.threads}  # fmt: skip
            indexing[model] = run_worker("benchmarks.search_indexing", settings)
        table = Table(title="Indexing throughput: index_archive (decoding in DataLoader workers) against bare encoding")
        for column in ("model", "images", "workers", "bare encode images/s", "index images/s", "x bare (goal >= 0.9)"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for model, row in indexing.items():
            if "error" in row:
                table.add_row(model, f"[red]{row['error']}[/red]", "", "", "", "")
                continue
            table.add_row(model, str(row["images"]), str(row["workers"]), f"{row['bare_images_per_s']:.1f}",
                          f"{row['index_images_per_s']:.1f}", f"{row['ratio']:.2f}")  # fmt: skip
        console.print(table)

        queries = []
        sizes = (
            ((10_000, 64, 64, 8), (50_000, 64, 256, 8))
            if quick
            else ((100_000, 512, 1024, 64), (1_000_000, 512, 4096, 64))
        )
        for vectors, dim, nlist, pq in sizes:
            for kind in ("flat", "ivfpq"):
                console.log(f"search: queries, {vectors:,} x {dim} vectors, {kind}")
                settings = {"vectors": vectors, "dim": dim, "kind": kind, "nlist": nlist, "pq": pq, "nprobe": 32,
                            "queries": 50 if quick else 200, "k": 10, "tmp": tmp, "threads": args.threads}  # fmt: skip
                queries.append({"settings": settings, **run_worker("benchmarks.search_query", settings)})
        table = Table(title="Query latency (one query at a time, exact rescoring included), k=10, clustered vectors")
        for column in (
            "vectors",
            "index",
            "build s",
            "p50 ms",
            "p95 ms",
            "recall@10",
            "disk B/vector",
            "memory B/vector",
        ):
            table.add_column(column, justify="right")
        for row in queries:
            setting = row["settings"]
            label = "exact" if setting["kind"] == "flat" else f"IVF{setting['nlist']},PQ{setting['pq']} nprobe 32"
            if "error" in row:
                table.add_row(f"{setting['vectors']:,}", label, f"[red]{row['error']}[/red]", "", "", "", "", "")
                continue
            disk = row["disk_bytes_per_vector"]
            recall = "-" if row["recall@10"] is None else f"{row['recall@10']:.3f}"
            table.add_row(f"{setting['vectors']:,} x {setting['dim']}", label, f"{row['build_s']:.1f}",
                          f"{row['p50_ms']:.2f}", f"{row['p95_ms']:.2f}", recall,
                          " + ".join(f"{name} {size:,.0f}" for name, size in disk.items()),
                          f"{row['memory_bytes_per_vector']:,.0f}")  # fmt: skip
        console.print(table)

        serve: dict[str, Any] = {"error": "no index: the tiny indexing run failed"}
        if "index" in indexing["tiny"]:
            clients, seconds = (8, 3) if quick else (32, 20)
            console.log(f"search: serve under {clients} clients for {seconds} s")
            settings = {"index": indexing["tiny"]["index"], "clients": clients, "seconds": seconds}
            serve = run_worker("benchmarks.search_serve", settings, timeout=300)
        if "error" in serve:
            console.print(f"[red]serve: {serve['error']}[/red]")
        else:
            console.print(
                f"serve ({serve['clients']} clients, {serve['seconds']:.0f} s, text / more-like / upload queries): "
                f"{serve['requests_per_s']:.1f} requests/s, p50 {serve['p50_ms']:.0f} ms, "
                f"p95 {serve['p95_ms']:.0f} ms, "
                f"{serve['errors']} errors, server RSS {serve['rss_start_mib']:.0f} -> {serve['rss_end_mib']:.0f} MiB "
                f"(max {serve['rss_max_mib']:.0f})"
            )
    return {"indexing": indexing, "queries": queries, "serve": serve}


def _committed_evaluation_memory(dim: int) -> float | None:
    """The NWPU-Captions peak RSS growth of the committed results at embedding dim ``dim`` ("as today")."""
    if not COMMITTED.is_file():
        return None
    rows = json.loads(COMMITTED.read_text()).get("evaluation", {}).get("results", [])
    for row in rows:
        if row["dataset"] == "NWPU-Captions" and row["dim"] == dim:
            return row["retrieval_metrics"].get("peak_rss_growth_mib")
    return None


def goal_figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of ``GOALS`` with its figure from this run (None where its part did not run or failed)."""
    figures: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    if "chunked" in report:
        comparison = report["chunked"]["comparison"]
        figures["chunked_memory"] = comparison["memory_ratio"]
        figures["chunked_time_per_sample"] = comparison["time_per_sample_ratio"]
    if "interleaved" in report:
        comparison = report["interleaved"]["comparison"]
        figures["harma_vs_full_time"] = comparison["time_ratio_harma_vs_full"]
        spread = comparison["time_ratio_per_round"]
        notes["harma_vs_full_time"] = f"per round {_fmt(spread['min'], '.2f')}-{_fmt(spread['max'], '.2f')}"
        figures["harma_vs_full_memory"] = comparison["memory_ratio_harma_vs_full"]
    nwpu = next((r for r in report.get("evaluation", {}).get("results", []) if r["dataset"] == "NWPU-Captions"), None)
    if nwpu is not None:
        figures["evaluation_vs_matmul"] = nwpu["time_ratio_vs_matmul"]
        committed = _committed_evaluation_memory(nwpu["dim"])
        figures["evaluation_memory"] = _ratio(nwpu["retrieval_metrics"].get("peak_rss_growth_mib"), committed)
        notes["evaluation_memory"] = (
            f"committed figure {committed:,.0f} MiB at D={nwpu['dim']}"
            if committed
            else f"no committed figure at D={nwpu['dim']} in {COMMITTED.name}"
        )
    goals = []
    for key, what, limit in GOALS:
        figure = figures.get(key)
        met = None if figure is None else figure <= limit
        goals.append({"goal": key, "what": what, "figure": figure, "limit": limit, "met": met, "note": notes.get(key)})
    return goals


def print_goals(goals: list[dict[str, Any]], quick: bool, console: Console) -> None:
    title = "Goals (issue 13)" + (": QUICK mode, not the goals' settings" if quick else "")
    table = Table(title=title)
    for column in ("goal", "figure", "limit", "met", "note"):
        table.add_column(column, justify="right" if column in ("figure", "limit") else "left")
    for goal in goals:
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "[yellow]not measured[/yellow]"}[goal["met"]]
        table.add_row(goal["what"], _fmt(goal["figure"], ".2f"), f"{goal['limit']:.2f}", met, goal["note"] or "")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/bench.json"), help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="batch 8, 1 warm-up + 2 timed steps, NWPU-size at D=64")
    parser.add_argument("--batch", type=int, default=None, help="training/encoding batch (default 32, quick 8)")
    parser.add_argument("--dim", type=int, default=None, help="embedding dim for evaluation (default 512)")
    parser.add_argument("--fallback-dim", type=int, default=128, help="D to retry with when an evaluation times out")
    parser.add_argument("--eval-timeout", type=float, default=180.0, help="seconds before an evaluation is retried")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the workers (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time the harma step under torch.compile")
    parser.add_argument("--chunk", type=int, default=None, help="rows per chunk of the chunked step (default 32)")
    parser.add_argument(
        "--paper-batch", type=int, default=None, help=f"batch of the chunked step (default {PAPER_BATCH}, quick 24)"
    )
    parser.add_argument(
        "--interleaved-steps", type=int, default=None, help="timed rounds of floor/harma/full (default 5, quick 2)"
    )
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only these parts (repeatable; default: all)"
    )
    parser.add_argument("--search-workers", type=int, default=2, help="DataLoader workers of the indexing benchmark")
    args = parser.parse_args(argv)
    args.batch = args.batch or (8 if args.quick else 32)
    args.warmup, args.steps = (1, 2) if args.quick else (2, 3)
    args.chunk = args.chunk or (8 if args.quick else 32)
    args.paper_batch = args.paper_batch or (24 if args.quick else PAPER_BATCH)
    args.chunked_steps = 1 if args.quick else 2
    args.interleaved_steps = args.interleaved_steps or (2 if args.quick else 5)
    args.dim = args.dim or 512
    if args.quick:
        args.fallback_dim = min(args.fallback_dim, 64)
        args.eval_timeout = min(args.eval_timeout, 60.0)
    parts = args.only or list(PARTS)

    console = Console(width=130)
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    if load > 0.5:
        console.print(
            f"[yellow]load average {load:.2f} at start: other processes share the CPUs; times are noisy[/yellow]"
        )
    report: dict[str, Any] = {
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "load_average_at_start": os.getloadavg(),
        },
        "quick": args.quick,
    }
    if "train" in parts:
        report["train_step"] = bench_train(args, console)
    if "interleaved" in parts:
        report["interleaved"] = bench_interleaved(args, console)
    if "chunked" in parts:
        report["chunked"] = bench_chunked(args, console)
    if "encoding" in parts:
        report["encoding"] = bench_encoding(args, console)
    if "evaluation" in parts:
        report["evaluation"] = bench_evaluation(args, console)
    if "cli" in parts:
        report["cli_startup"] = bench_cli(args, console)
    if "search" in parts:
        report["search"] = bench_search(args, console)
    report["goals"] = goal_figures(report)
    print_goals(report["goals"], args.quick, console)
    report["wall_s"] = time.perf_counter() - started
    report["environment"]["load_average_at_end"] = os.getloadavg()
    atomic_write(args.out, lambda path: path.write_text(json.dumps(report, indent=2) + "\n"))
    console.print(f"wrote {args.out} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
