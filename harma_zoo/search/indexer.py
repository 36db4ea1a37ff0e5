"""``harma-zoo index``: embed an archive into an index folder, incrementally, resumably, in one process or many.

One run: check the folder and the model against it, list the archive, plan (keep unchanged items,
embed new and changed ones, drop the rest), take back what an interrupted run left in shards,
embed the remaining items in DataLoader workers while the model runs, committing shards as it
goes, and finally commit the next generation (see ``storage``).

Under torchrun every process embeds every ``world``-th batch of the plan and writes its own shards;
process 0 plans, waits for the others, and merges. The batches are the plan's, whoever embeds
them, so the merged index is the one a single process makes. The processes only exchange the
plan and a barrier, over gloo, so the same code runs on CPUs and on one GPU per process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text
from torch.utils.data import DataLoader

from harma_zoo.api import Pretrained
from harma_zoo.search.decode import ItemImages, collate_items
from harma_zoo.search.errors import SearchError
from harma_zoo.search.identity import ModelIdentity, load_model
from harma_zoo.search.items import RECORD_SCHEMA, Item, record, records_table
from harma_zoo.search.plan import Done, Plan, done_in_shards, make_plan
from harma_zoo.search.sources import archive_items
from harma_zoo.search.storage import Committed, IndexFolder, shard_schema
from harma_zoo.search.vector_index import IndexOptions, build_faiss

__all__ = ["IndexReport", "index_archive"]

SHARD_SECONDS = 60.0  # a shard is committed at least this often, so a kill loses at most about this much work
_SHOWN = 20


@dataclass
class IndexReport:
    """What a run did. ``skipped`` lists the items that did not decode, as (item, reason)."""

    folder: Path
    vectors: int = 0
    embedded: int = 0
    resumed: int = 0
    kept: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    processes: int = 1  # how many processes' shards were merged
    seconds: float = 0.0
    embed_seconds: float = 0.0  # decoding and embedding (process 0's share), shards included

    def summary(self) -> str:
        line = (
            f"index {self.folder}: {self.vectors:,} vectors ({self.kept:,} kept, {self.added:,} new, "
            f"{self.changed:,} changed, {self.removed:,} removed; {self.embedded:,} embedded now, "
            f"{self.resumed:,} taken from an interrupted run) in {self.seconds:.1f} s"
        )
        if self.processes > 1:
            line += f"; merged the shards of {self.processes} processes"
        if self.skipped:
            line += f"; {len(self.skipped):,} skipped (do not decode)"
        return line


@dataclass
class _Work:
    """The plan as process 0 shares it: the items to embed, their ids and the batches left to embed."""

    plan: Plan
    batches: list[list[int]]
    resumed: int


def index_archive(
    archive: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    device: torch.device | str | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    chip: int = 224,
    overlap: int = 0,
    geo: bool = True,
    strict: bool = False,
    options: IndexOptions | None = None,
    shard_size: int = 4096,
    progress: bool = True,
    registry: str | Path | None = None,
) -> IndexReport:
    """Embed ``archive`` (folder, list file or GeoTIFF scene) with ``model`` into the index folder ``out``.

    ``options`` is the FAISS index (default: the folder's current kind, exact for a new one).
    Items that do not decode are skipped and listed in the report; ``strict`` makes them an error
    (then nothing is committed). Under torchrun each process embeds its share (see the module doc).
    """
    if batch_size < 1:
        raise SearchError(f"--batch-size must be positive, got {batch_size}")
    if shard_size < 1:
        raise SearchError(f"--shard-size must be positive, got {shard_size}")
    started = time.perf_counter()
    folder = IndexFolder(out)
    with _process_group(), ExitStack() as stack:
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if device is None and torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        committed = None
        if rank == 0:
            try:  # the folder and the archive first: their errors come before the model is loaded
                folder.check_writable()
                stack.enter_context(folder.lock())
                items = archive_items(archive, chip, overlap, geo)
                pretrained, identity = load_model(model, device, registry)
                committed, work = _prepare(folder, identity, items, batch_size)
            except Exception as error:
                _share(error if isinstance(error, SearchError | FileNotFoundError) else SearchError(str(error)), world)
                raise
            _share(work, world)
        else:
            pretrained, identity = load_model(model, device, registry)
            work = _share(None, world)
            if isinstance(work, Exception):
                raise SearchError(f"process 0 stopped: {work}")
        embedding = time.perf_counter()
        _embed(pretrained, folder, work, rank, world, identity.dim, workers, shard_size, progress and rank == 0)
        report = IndexReport(folder.path, resumed=work.resumed, embed_seconds=time.perf_counter() - embedding)
        if world > 1:
            dist.barrier()
        if rank == 0:
            _commit(folder, work.plan, committed, identity, options, strict, report)
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def _process_group() -> Iterator[None]:
    """torchrun's processes join one gloo group (it only carries the plan and a barrier); a plain run stays alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(hours=24))  # a barrier waits for the slowest share
        try:
            yield
        finally:
            dist.destroy_process_group()
    else:
        yield


def _share(value: Any, world: int) -> Any:
    """Process 0's ``value``, on every process."""
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _prepare(
    folder: IndexFolder, identity: ModelIdentity, items: list[Item], batch_size: int
) -> tuple[Committed | None, _Work]:
    existing = folder.identity()
    if existing is not None and not existing.same_vectors_as(identity):
        raise SearchError(
            f"index {folder.path} holds vectors of {existing.describe()}; --model {identity.describe()} makes other "
            "vectors: index with the first model, or into a new folder"
        )
    if existing is None:
        folder.write_identity(identity)
    committed = folder.committed()
    folder.remove_uncommitted(committed, shards=False)  # files of a generation a killed run did not commit
    plan = make_plan(items, committed)
    done = done_in_shards(folder, plan).positions()
    remaining = [p for p in range(len(plan.todo)) if p not in done]
    # Every batch of the plan but the last is full, so the remaining ones re-cut by batch_size are the plan's.
    batches = [remaining[start : start + batch_size] for start in range(0, len(remaining), batch_size)]
    return committed, _Work(plan, batches, len(done))


class _RateColumn(ProgressColumn):
    """Images per second since the start (decoding included): what the archive takes, not a recent burst."""

    def render(self, task: Any) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        return Text(f"{task.completed / elapsed if elapsed else 0:,.1f} images/s")


def _embed(
    pretrained: Pretrained,
    folder: IndexFolder,
    work: _Work,
    rank: int,
    world: int,
    dim: int,
    workers: int | None,
    shard_size: int,
    show: bool,
) -> None:
    """Embed this process's batches (every ``world``-th), committing a shard every ``shard_size`` items or
    ``SHARD_SECONDS``."""
    batches = work.batches[rank::world]
    if not batches:
        return
    model = pretrained.model
    device = next(model.parameters()).device
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    loader = DataLoader(
        ItemImages(work.plan.todo, pretrained.transform),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_items,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    pending: list[dict[str, Any]] = []
    last_commit = time.monotonic()
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), _RateColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show) as bar:
        task = bar.add_task("embedding", total=sum(len(batch) for batch in batches))
        for batch in loader:
            if batch["pixels"] is not None:
                with torch.no_grad():
                    vectors = model.encode_image(batch["pixels"].to(device, non_blocking=True)).float().cpu().numpy()
                for position, vector in zip(batch["positions"], vectors, strict=True):
                    pending.append(_shard_row(work.plan, position, vector, None))
            for position, error in batch["errors"]:
                pending.append(_shard_row(work.plan, position, None, error))
            bar.advance(task, len(batch["positions"]) + len(batch["errors"]))
            if len(pending) >= shard_size or time.monotonic() - last_commit >= SHARD_SECONDS:
                folder.write_shard(pa.Table.from_pylist(pending, schema=shard_schema(dim)), rank)
                pending, last_commit = [], time.monotonic()
    if pending:
        folder.write_shard(pa.Table.from_pylist(pending, schema=shard_schema(dim)), rank)


def _shard_row(plan: Plan, position: int, vector: np.ndarray | None, error: str | None) -> dict[str, Any]:
    return {**record(plan.todo[position], plan.first_id + position), "vector": vector, "error": error}


def _commit(
    folder: IndexFolder,
    plan: Plan,
    committed: Committed | None,
    identity: ModelIdentity,
    options: IndexOptions | None,
    strict: bool,
    report: IndexReport,
) -> None:
    """Merge the kept rows and every shard row of the plan into the next generation, then drop the shards."""
    done = done_in_shards(folder, plan)
    missing = len(plan.todo) - len(done.positions())
    if missing:
        raise SearchError(f"{missing} planned items of {folder.path} have no shard row; run harma-zoo index again")
    new_positions, failed = _outcomes(done)
    report.skipped = [(plan.todo[p].label(), error) for p, error in sorted(failed.items())]
    if strict and failed:
        raise SearchError(
            f"{len(failed)} of {len(plan.todo)} items do not decode: {_listing(report.skipped)}; the index was left "
            "as it was (without --strict they are skipped)"
        )
    total = len(plan.kept_rows) + len(new_positions)
    if total == 0:
        raise SearchError(f"none of the {len(plan.todo)} items decodes: {_listing(report.skipped)}")
    options = options or _current_options(committed)
    kept = _kept_manifest(committed, plan)
    new = records_table(record(plan.todo[p], plan.first_id + p) for p in new_positions)
    manifest = pa.concat_tables([kept, new])
    destination = {int(p): len(plan.kept_rows) + i for i, p in enumerate(new_positions)}
    old_vectors = folder.vectors(committed) if committed is not None else None

    def fill(out: np.ndarray) -> None:
        for start in range(0, len(plan.kept_rows), 65_536):
            rows = plan.kept_rows[start : start + 65_536]
            out[start : start + len(rows)] = old_vectors[rows]
        for _, table, rows, positions in done.shards:
            ok = [(row, int(p)) for row, p in zip(rows, positions, strict=True) if int(p) in destination]
            if ok:
                vectors = table.column("vector").take(pa.array([row for row, _ in ok])).combine_chunks()
                out[[destination[p] for _, p in ok]] = vectors.flatten().to_numpy().reshape(len(ok), identity.dim)

    previous = (
        folder.faiss_index(committed) if committed is not None and committed.kind == options.kind == "ivfpq" else None
    )
    meta = {"next_id": plan.next_id, "dim": identity.dim, **options.stored()}
    state = folder.commit(manifest, fill, lambda vectors: build_faiss(vectors, options, previous), meta, committed)
    folder.remove_uncommitted(state, shards=True)
    report.vectors, report.kept, report.removed = total, len(plan.kept_rows), plan.removed
    report.added, report.changed = plan.added, plan.changed
    report.embedded = len(plan.todo) - report.resumed
    report.processes = len({path.name.partition("-")[0] for path, _, _, _ in done.shards}) or 1


def _outcomes(done: Done) -> tuple[list[int], dict[int, str]]:
    """Todo positions embedded (ascending, i.e. id order) and those that did not decode, with why."""
    embedded, failed = [], {}
    for _, table, rows, positions in done.shards:
        errors = table.column("error").to_pylist()
        for row, position in zip(rows.tolist(), positions.tolist(), strict=True):
            if errors[row] is None:
                embedded.append(position)
            else:
                failed[position] = errors[row]
    return sorted(embedded), failed


def _kept_manifest(committed: Committed | None, plan: Plan) -> pa.Table:
    if committed is None:
        return RECORD_SCHEMA.empty_table()
    return committed.manifest.take(pa.array(plan.kept_rows)).cast(RECORD_SCHEMA)


def _current_options(committed: Committed | None) -> IndexOptions:
    if committed is None or committed.kind == "flat":
        return IndexOptions()
    return IndexOptions(committed.kind, committed.nlist, committed.pq)


def _listing(skipped: list[tuple[str, str]]) -> str:
    shown = "; ".join(error for _, error in skipped[:_SHOWN])  # each error names its file (and chip)
    return shown if len(skipped) <= _SHOWN else f"{shown}; and {len(skipped) - _SHOWN} more"
