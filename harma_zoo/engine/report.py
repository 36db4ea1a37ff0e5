"""Retrieval tables for the terminal."""

from __future__ import annotations

from rich.table import Table

COLUMNS = ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10", "mR")


def metrics_table(rows: dict[str, dict[str, float]], title: str = "retrieval (%)") -> Table:
    """One row per named result, the six recalls and mR as columns."""
    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for column in COLUMNS:
        table.add_column(column.replace("_R@", " R@"), justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *(f"{metrics[column]:.2f}" for column in COLUMNS))
    return table
