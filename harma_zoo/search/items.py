"""What an index holds a vector of: an image file, or a chip of a georeferenced scene.

An item is known by its key, ``(path, window)``: the file and, for a chip, its pixel window
in the scene. ``size`` and ``mtime_ns`` tell whether the file changed since it was embedded.
The same records are the rows of the manifest and of the shards, as an Arrow table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

Window = tuple[int, int, int, int]  # col_off, row_off, width, height (pixels)
Ring = tuple[tuple[float, float], ...]  # closed ring of (x, y) in the item's CRS

WINDOW_TYPE = pa.struct(
    [("col_off", pa.int64()), ("row_off", pa.int64()), ("width", pa.int64()), ("height", pa.int64())]
)
RECORD_FIELDS = [
    pa.field("id", pa.int64(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("window", WINDOW_TYPE),
    pa.field("footprint", pa.list_(pa.list_(pa.float64(), 2))),
    pa.field("crs", pa.string()),
    pa.field("size", pa.int64(), nullable=False),
    pa.field("mtime_ns", pa.int64(), nullable=False),
]
RECORD_SCHEMA = pa.schema(RECORD_FIELDS)


@dataclass(frozen=True)
class Item:
    """One thing to embed: a whole image (``window`` None) or a chip of a scene."""

    path: str
    window: Window | None
    size: int
    mtime_ns: int
    crs: str | None = None
    footprint: Ring | None = None

    @property
    def key(self) -> tuple[str, Window | None]:
        return self.path, self.window

    def label(self) -> str:
        """How messages name it: the path, plus the window of a chip."""
        if self.window is None:
            return self.path
        col, row, width, height = self.window
        return f"{self.path} [chip col {col}, row {row}, {width}x{height}]"


def record(item: Item, item_id: int) -> dict[str, Any]:
    """The manifest row of ``item`` under ``item_id``."""
    window = None if item.window is None else dict(zip(WINDOW_TYPE.names, item.window, strict=True))
    footprint = None if item.footprint is None else [list(point) for point in item.footprint]
    return {
        "id": item_id,
        "path": item.path,
        "window": window,
        "footprint": footprint,
        "crs": item.crs,
        "size": item.size,
        "mtime_ns": item.mtime_ns,
    }


def records_table(rows: Iterable[dict[str, Any]], schema: pa.Schema = RECORD_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema)


def items_of(table: pa.Table) -> list[tuple[int, Item]]:
    """``(id, item)`` for every row of a manifest or shard table."""
    return [(row["id"], item_of(row)) for row in table.select([f.name for f in RECORD_FIELDS]).to_pylist()]


def item_of(row: dict[str, Any]) -> Item:
    window = row["window"]
    footprint = row["footprint"]
    return Item(
        path=row["path"],
        window=None if window is None else tuple(window[name] for name in WINDOW_TYPE.names),
        size=row["size"],
        mtime_ns=row["mtime_ns"],
        crs=row["crs"],
        footprint=None if footprint is None else tuple(tuple(point) for point in footprint),
    )


def keys_of(table: pa.Table) -> list[tuple[str, Window | None]]:
    """The key of every row, cheaper than building the items."""
    windows = table.column("window").to_pylist()
    return [
        (path, None if w is None else (w["col_off"], w["row_off"], w["width"], w["height"]))
        for path, w in zip(table.column("path").to_pylist(), windows, strict=True)
    ]


def unique_items(items: Sequence[Item]) -> list[Item]:
    """``items`` without repeated keys (a list file may name a file twice), first one kept."""
    seen: set[tuple[str, Window | None]] = set()
    kept = []
    for item in items:
        if item.key not in seen:
            seen.add(item.key)
            kept.append(item)
    return kept
