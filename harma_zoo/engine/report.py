"""Retrieval tables for the terminal."""

from __future__ import annotations

from rich.table import Table

from harma_zoo.engine.metric import METRIC_KEYS, metric_label


def metrics_table(rows: dict[str, dict[str, float]], title: str = "retrieval (%)") -> Table:
    """One row per named result, the six recalls and mR as columns."""
    table = Table(title=title)
    table.add_column("", overflow="fold")  # a long label folds; the figures keep their width
    for key in METRIC_KEYS:
        table.add_column(metric_label(key), justify="right", no_wrap=True, min_width=5)
    for name, metrics in rows.items():
        table.add_row(name, *(f"{metrics[key]:.2f}" for key in METRIC_KEYS))
    return table
