"""The bench leaderboard: finished runs ranked by validation mR, as Markdown, CSV, JSON and a PNG plot.

Every file is written atomically, so a reader never sees half of one. The rows come
from the runs' ``result.json`` files; the plot puts validation mR against the number
of trainable parameters on a log axis (a run that trains nothing sits at x = 1).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.table import Table

from harma_zoo.engine.metric import MEAN_RECALL, RECALL_KEYS, metric_label, recall_key
from harma_zoo.fileio import atomic_write

# (key in a row, column header); the same columns, in this order, in every format.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("run", "run"),
    ("backbone", "backbone"),
    ("dataset", "dataset"),
    ("method", "method"),
    ("trainable_params", "trainable params"),
    ("percent_of_backbone", "% of backbone"),
    *((f"val_{key}", f"val {metric_label(key)}") for key in RECALL_KEYS),  # mR has its own columns
    ("val_mR", "val mR"),
    ("test_mR", "test mR"),
    ("best_epoch", "best epoch"),
    ("wall_time_min", "wall time (min)"),
)
FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.png")


def leaderboard_row(result: dict[str, Any]) -> dict[str, Any]:
    """One leaderboard row from a run's ``result.json`` content."""
    val = result["metrics"].get("val", {})
    test = result["metrics"].get("test")
    row = {
        "run": result["run"],
        "backbone": result["backbone_label"],
        "dataset": result["dataset"]["name"],
        "method": result["method"]["name"],
        "trainable_params": result["parameters"]["trainable"],
        "percent_of_backbone": result["parameters"]["trainable_percent_of_backbone"],
        **{f"val_{key}": val.get(key) for key in RECALL_KEYS},
        "val_mR": val.get(MEAN_RECALL),
        "test_mR": test.get(MEAN_RECALL) if test else None,
        "best_epoch": result.get("best_epoch"),
        # training and evaluation of the run; None for a run recorded before this was kept
        "wall_time_min": round(result["wall_time_s"] / 60, 1) if result.get("wall_time_s") is not None else None,
    }
    return row


def ranked(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leaderboard rows sorted by validation mR, best first (ties: by run id)."""
    rows = [leaderboard_row(result) for result in results]
    return sorted(rows, key=lambda row: (-(row["val_mR"] if row["val_mR"] is not None else float("-inf")), row["run"]))


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "trainable_params":
        return f"{value:,}"
    if key == "percent_of_backbone":
        return f"{value:.3f}"
    if key == "wall_time_min":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    """A GitHub Markdown table, text columns left-aligned and numbers right-aligned."""
    numeric = {key for key, _ in COLUMNS[4:]}
    lines = [
        "# Bench leaderboard",
        "",
        "Sorted by validation mR (the selection metric); retrieval in %. `-`: not measured.",
        "",
        "| " + " | ".join(header for _, header in COLUMNS) + " |",
        "|" + "|".join("---:" if key in numeric else ":---" for key, _ in COLUMNS) + "|",
    ]
    for row in rows:
        cells = (_cell(key, row[key]).replace("|", "\\|") for key, _ in COLUMNS)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV with the row keys as header; full-precision numbers, empty cells for what was not measured."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[key for key, _ in COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(rows: list[dict[str, Any]]) -> str:
    document = {"sorted_by": "val_mR", "columns": dict(COLUMNS), "rows": rows}
    return json.dumps(document, indent=2) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Validation mR against trainable parameters (log x), one marker per run, labelled by method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend state
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    markers = "osD^vP*Xh<>"
    methods = sorted({row["method"] for row in rows})
    for index, method in enumerate(methods):
        mine = [row for row in rows if row["method"] == method and row["val_mR"] is not None]
        xs = [max(row["trainable_params"], 1) for row in mine]
        axes.scatter(xs, [row["val_mR"] for row in mine], marker=markers[index % len(markers)], s=50, label=method)
        for row, x in zip(mine, xs, strict=True):
            axes.annotate(row["method"], (x, row["val_mR"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("trainable parameters (log scale; none trained: plotted at 1)")
    axes.set_ylabel("validation mR (%)")
    axes.set_title("harma-zoo bench: validation mR against trainable parameters")
    axes.grid(True, which="both", alpha=0.3)
    if methods:
        axes.legend(title="method", fontsize=8)
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png"))


def write_leaderboard(rows: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """Write the four leaderboard files into ``out``; returns them by format."""
    out = Path(out)
    paths = {name.rsplit(".", 1)[1]: out / name for name in FILES}
    for kind, render in (("md", markdown), ("csv", csv_text), ("json", json_text)):
        text = render(rows)
        atomic_write(paths[kind], lambda temporary, text=text: temporary.write_text(text))
    plot(rows, paths["png"])
    return paths


def rich_table(
    rows: list[dict[str, Any]], title: str = "bench leaderboard: validation retrieval (%), best first"
) -> Table:
    """The leaderboard for the terminal, narrow enough for one: method first, then where it ran."""
    shown = (
        ("method", "method"),
        ("trainable_params", "trainable"),
        *((f"val_{key}", metric_label(key)) for key in (MEAN_RECALL, recall_key("i2t", 1), recall_key("t2i", 1))),
        ("best_epoch", "epoch"),
        ("wall_time_min", "min"),
        ("run", "run"),
    )
    table = Table(title=title)
    for key, header in shown:
        numeric = key not in ("method", "run")
        table.add_column(header, justify="right" if numeric else "left", no_wrap=key != "run", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(key, row[key]) for key, _ in shown))
    return table
