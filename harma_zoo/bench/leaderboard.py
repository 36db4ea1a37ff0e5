"""The bench leaderboard: finished runs ranked by validation mR, as Markdown, CSV, JSON and a PNG plot.

Every file is written atomically, so a reader never sees half of one. The rows come
from the runs' ``result.json`` files. Runs of one group at one learning rate (the seeds of a cell,
``bench --seeds``) are also pooled into a row of means and sample standard deviations; the plot
puts each group's mean validation mR, with its standard deviation as an error bar, against the
number of trainable parameters on a log axis (a run that trains nothing sits at x = 1), each
method in its own colour in every plot.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import statistics
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
    ("val_zs_top1", "val zero-shot top-1"),
    ("seed", "seed"),
    ("lr", "lr"),
    ("best_epoch", "best epoch"),
    ("wall_time_min", "wall time (min)"),
)
# The pooled rows: (key, header); a *_mean key is shown with its *_std as "mean ± std".
GROUP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("group", "runs pooled"),
    ("method", "method"),
    ("lr", "lr"),
    ("seeds", "seeds"),
    ("trainable_params", "trainable params"),
    ("val_mR_mean", "val mR"),
    ("val_zs_top1_mean", "val zero-shot top-1"),
    ("wall_time_min_mean", "wall time (min)"),
)
POOLED = ("val_mR", "val_zs_top1", "wall_time_min")
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
        "val_zs_top1": result.get("zeroshot", {}).get("val", {}).get("metrics", {}).get("top1"),
        "seed": result.get("seed") if result.get("trained") else None,
        "lr": result.get("lr"),
        "group": result.get("group", result["run"]),
        "best_epoch": result.get("best_epoch"),
        # training and evaluation of the run; None for a run recorded before this was kept
        "wall_time_min": round(result["wall_time_s"] / 60, 1) if result.get("wall_time_s") is not None else None,
    }
    return row


def ranked(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leaderboard rows sorted by validation mR, best first (ties: by run id)."""
    rows = [leaderboard_row(result) for result in results]
    return sorted(rows, key=lambda row: (-(row["val_mR"] if row["val_mR"] is not None else float("-inf")), row["run"]))


def _spread(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the measured values (std None below two)."""
    measured = [value for value in values if value is not None]
    if not measured:
        return None, None
    return statistics.fmean(measured), statistics.stdev(measured) if len(measured) > 1 else None


def grouped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group of runs at one rate (the seeds of a cell): means and standard deviations, best first.

    The rates of a learning-rate grid (``bench --tune``) share a group but are not seeds: each stays a row.
    """
    groups: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["group"], row["lr"]), []).append(row)
    pooled = []
    for (name, _), members in groups.items():
        members = sorted(members, key=lambda row: (row["seed"] is None, row["seed"] or 0, row["run"]))
        first = members[0]
        entry = {
            "group": name,
            "method": first["method"],
            "dataset": first["dataset"],
            "lr": first["lr"],
            "seeds": [row["seed"] for row in members if row["seed"] is not None],
            "runs": [row["run"] for row in members],
            "trainable_params": first["trainable_params"],
        }
        for key in POOLED:
            entry[f"{key}_mean"], entry[f"{key}_std"] = _spread([row[key] for row in members])
        pooled.append(entry)
    return sorted(pooled, key=lambda g: (-(g["val_mR_mean"] if g["val_mR_mean"] is not None else -1e9), g["group"]))


def _pooled_cell(key: str, group: dict[str, Any]) -> str:
    if key.endswith("_mean"):
        mean, std = group[key], group[key.replace("_mean", "_std")]
        digits = 1 if key.startswith("wall_time") else 2
        if mean is None:
            return "-"
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
    if key == "seeds":
        return ", ".join(map(str, group[key])) or "-"
    return _cell(key, group[key])


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "lr":
        return f"{value:g}"
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
    groups = grouped(rows)
    if len(groups) < len(rows):  # some runs are seeds of one cell: pool them
        lines += [
            "",
            "## Seeds pooled",
            "",
            "Mean ± sample standard deviation over the runs of each cell, sorted by mean validation mR.",
            "",
            "| " + " | ".join(header for _, header in GROUP_COLUMNS) + " |",
            "|" + "|".join(":---" if key in ("group", "method") else "---:" for key, _ in GROUP_COLUMNS) + "|",
        ]
        for group in groups:
            cells = (_pooled_cell(key, group).replace("|", "\\|") for key, _ in GROUP_COLUMNS)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV with the row keys as header; full-precision numbers, empty cells for what was not measured."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=[key for key, _ in COLUMNS] + ["group"], lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(rows: list[dict[str, Any]]) -> str:
    document = {"sorted_by": "val_mR", "columns": dict(COLUMNS), "rows": rows, "groups": grouped(rows)}
    return json.dumps(document, indent=2) + "\n"


# One colour and marker per method, the same in every plot; other names get a fixed one from the rest.
# The HarMA variants often score alike with the same parameter count: the paper's is a hollow diamond
# around the released one's square, so neither hides the other.
METHOD_STYLES: dict[str, tuple[str, str]] = {
    "frozen": ("tab:gray", "o"),
    "harma": ("tab:red", "s"),
    "harma-paper": ("tab:orange", "D"),
    "harma_paper": ("tab:orange", "D"),
    "lora": ("tab:blue", "^"),
    "adapter": ("tab:green", "v"),
    "full": ("tab:purple", "P"),
}
HOLLOW = {"harma-paper", "harma_paper"}
OTHER_STYLES = tuple(zip(("tab:brown", "tab:pink", "tab:olive", "tab:cyan"), "X*h<>p", strict=False))


def method_style(method: str) -> tuple[str, str]:
    """(colour, marker) of a method: fixed for the known ones, else chosen by a hash of its name."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    return OTHER_STYLES[int(hashlib.sha256(method.encode()).hexdigest(), 16) % len(OTHER_STYLES)]


def plot_title(rows: list[dict[str, Any]]) -> str:
    datasets = ", ".join(sorted({str(row["dataset"]) for row in rows})) or "no runs"
    return f"{datasets}, validation split: mR against trainable parameters"


def figure(rows: list[dict[str, Any]]):
    """Mean validation mR against trainable parameters (log x), one marker per group of runs with its
    standard deviation as an error bar, a colour per method.

    Methods are named in a legend beside the axes rather than beside each point, where the labels of
    runs with similar figures (harma and harma-paper) overlapped and the rightmost one was cut off.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend state
    from matplotlib.figure import Figure

    chart = Figure(figsize=(7.5, 4.5), dpi=120, layout="constrained")
    FigureCanvasAgg(chart)
    axes = chart.add_subplot()
    groups = grouped(rows)
    methods = sorted({group["method"] for group in groups})
    for method in methods:
        mine = [group for group in groups if group["method"] == method and group["val_mR_mean"] is not None]
        colour, marker = method_style(method)
        face, size = ("none", 11) if method in HOLLOW else (colour, 8)
        axes.errorbar(
            [max(group["trainable_params"], 1) for group in mine],
            [group["val_mR_mean"] for group in mine],
            yerr=[group["val_mR_std"] or 0.0 for group in mine],
            fmt=marker,
            markersize=size,
            markerfacecolor=face,
            markeredgecolor=colour,
            markeredgewidth=1.5,
            ecolor=colour,
            elinewidth=1.2,
            capsize=4,
            label=method,
        )
    axes.set_xscale("log")
    axes.set_xlabel("trainable parameters (log scale; none trained: plotted at 1)")
    axes.set_ylabel("validation mR (%)")
    axes.set_title(plot_title(rows))
    axes.grid(True, which="both", alpha=0.3)
    if methods:
        axes.legend(title="method", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return chart


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Write ``figure(rows)`` as a PNG, atomically."""
    chart = figure(rows)
    atomic_write(path, lambda temporary: chart.savefig(temporary, format="png"))


def write_leaderboard(rows: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """Write the four leaderboard files into ``out``; returns them by format.

    The plot needs matplotlib (the ``plot`` extra); without it the PNG is left out, the tables are not.
    """
    out = Path(out)
    paths = {name.rsplit(".", 1)[1]: out / name for name in FILES}
    for kind, render in (("md", markdown), ("csv", csv_text), ("json", json_text)):
        text = render(rows)
        atomic_write(paths[kind], lambda temporary, text=text: temporary.write_text(text))
    try:
        plot(rows, paths["png"])
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "matplotlib":
            raise
        del paths["png"]
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
