"""Metric tables for the terminal."""

from __future__ import annotations

from rich.table import Table

from harma_zoo.engine.metric import METRIC_KEYS, metric_label


def metrics_table(
    rows: dict[str, dict[str, float]], title: str = "retrieval (%)", columns: dict[str, str] | None = None
) -> Table:
    """One row per named result; columns: ``columns`` (metric key -> header), by default the six recalls and mR."""
    columns = columns or {key: metric_label(key) for key in METRIC_KEYS}
    table = Table(title=title)
    table.add_column("", overflow="fold")  # a long label folds; the figures keep their width
    for header in columns.values():
        table.add_column(header, justify="right", no_wrap=True, min_width=5)
    for name, metrics in rows.items():
        table.add_row(name, *(f"{metrics[key]:.2f}" for key in columns))
    return table
