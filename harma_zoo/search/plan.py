"""What a run of ``harma-zoo index`` has to do: keep, embed, drop; and what an interrupted run already did.

Ids are given once and never reused: an item keeps its id while its file is unchanged (same size
and mtime); a new or changed item gets the next free id, in archive order. The plan depends only
on the committed manifest and the archive, so a run that was killed and the run that takes over
plan the same ids, and a shard row counts as done only where its key, id, size and mtime are what
the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from harma_zoo.search.items import Item, Window, keys_of
from harma_zoo.search.storage import Committed, IndexFolder

__all__ = ["Done", "Plan", "done_in_shards", "make_plan"]


@dataclass
class Plan:
    """The archive against the committed index."""

    kept_rows: np.ndarray  # committed manifest rows that stay (ascending: id order)
    todo: list[Item]  # new or changed items, in archive order
    first_id: int  # todo[p] gets id first_id + p
    added: int
    changed: int
    removed: int

    @property
    def next_id(self) -> int:
        return self.first_id + len(self.todo)


def make_plan(items: list[Item], committed: Committed | None) -> Plan:
    if committed is None:
        return Plan(np.zeros(0, dtype=np.int64), list(items), 0, len(items), 0, 0)
    manifest = committed.manifest
    by_key = {key: row for row, key in enumerate(keys_of(manifest))}
    sizes = manifest.column("size").to_numpy()
    mtimes = manifest.column("mtime_ns").to_numpy()
    kept, todo, changed = [], [], 0
    for item in items:
        row = by_key.get(item.key)
        if row is not None and sizes[row] == item.size and mtimes[row] == item.mtime_ns:
            kept.append(row)
        else:
            todo.append(item)
            changed += row is not None
    removed = manifest.num_rows - len(kept) - changed
    return Plan(
        np.sort(np.asarray(kept, dtype=np.int64)), todo, committed.next_id, len(todo) - changed, changed, removed
    )


@dataclass
class Done:
    """Todo items that shards already hold: per shard, its table and (table row, todo position) pairs."""

    shards: list[tuple[Path, pa.Table, np.ndarray, np.ndarray]] = field(default_factory=list)

    def positions(self) -> set[int]:
        return {int(p) for _, _, _, positions in self.shards for p in positions}


def done_in_shards(folder: IndexFolder, plan: Plan) -> Done:
    """The shard rows that match the plan exactly; other rows (a plan that changed since) are ignored."""
    position_of: dict[tuple[str, Window | None], int] = {item.key: p for p, item in enumerate(plan.todo)}
    done, seen = Done(), set()
    for path, table in folder.shard_tables():
        ids = table.column("id").to_numpy()
        sizes = table.column("size").to_numpy()
        mtimes = table.column("mtime_ns").to_numpy()
        rows, positions = [], []
        for row, key in enumerate(keys_of(table)):
            p = position_of.get(key)
            if p is None or p in seen:
                continue
            item = plan.todo[p]
            if ids[row] == plan.first_id + p and sizes[row] == item.size and mtimes[row] == item.mtime_ns:
                rows.append(row)
                positions.append(p)
                seen.add(p)
        if rows:
            done.shards.append((path, table, np.asarray(rows, dtype=np.int64), np.asarray(positions, dtype=np.int64)))
    return done
