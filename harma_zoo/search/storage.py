"""The index folder on disk, and how work in it is committed so that a kill loses nothing that was committed.

Layout::

    identity.json            the model that made the vectors (written once, when the folder is created)
    shards/*.parquet         embedded items not yet merged: records, vectors, decoding errors
    vectors-GEN.npy          float32 vectors, one row per manifest row (memory-mapped when read)
    index-GEN.faiss          the FAISS index over those rows (its labels are the row numbers)
    manifest.parquet         one row per item (id, path, window, footprint, CRS, size, mtime); written
                             last, it is the commit: its metadata names the generation GEN it goes with

Every file is written under a temporary name, flushed to disk (fsync) and renamed, so a reader
sees either the old file or the new one. A run writes its shards as it goes; at the end it writes
the next generation's vectors and index, then the manifest, and only then deletes the shards and
the previous generation. Killed at any point, the folder still holds the last committed index, and
the next run takes the shards back instead of embedding their items again.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harma_zoo.fileio import atomic_write
from harma_zoo.search.errors import SearchError
from harma_zoo.search.identity import ModelIdentity
from harma_zoo.search.items import RECORD_FIELDS

__all__ = ["Committed", "IndexFolder", "durable_write", "shard_schema"]

IDENTITY = "identity.json"
MANIFEST = "manifest.parquet"
SHARDS = "shards"
LOCK = ".lock"
META_KEY = b"harma_zoo_search"


def durable_write(path: Path, write: Callable[[Path], object]) -> None:
    """``atomic_write``, with the data and then the rename flushed to disk: a commit that survives a crash."""

    def write_and_sync(temporary: Path) -> None:
        write(temporary)
        _fsync(temporary)

    atomic_write(path, write_and_sync)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shard_schema(dim: int) -> pa.Schema:
    """A shard's rows: the item record, its vector (null where it did not decode) and the error, if any."""
    return pa.schema([*RECORD_FIELDS, pa.field("vector", pa.list_(pa.float32(), dim)), pa.field("error", pa.string())])


@dataclass(frozen=True)
class Committed:
    """The last committed state of an index folder."""

    manifest: pa.Table
    generation: int
    next_id: int
    kind: str
    nlist: int | None
    pq: int | None

    @property
    def vectors_file(self) -> str:
        return f"vectors-{self.generation:06d}.npy"

    @property
    def index_file(self) -> str:
        return f"index-{self.generation:06d}.faiss"


class IndexFolder:
    """An index folder: what is committed in it, its shards, and committing the next generation."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def shards(self) -> Path:
        return self.path / SHARDS

    # --- reading -------------------------------------------------------------------------

    def identity(self) -> ModelIdentity | None:
        """The identity of the index, None where the folder is not (yet) an index."""
        path = self.path / IDENTITY
        return ModelIdentity.from_json(path.read_text(encoding="utf-8"), path) if path.is_file() else None

    def require_index(self) -> tuple[ModelIdentity, Committed]:
        """Identity and committed state of an index to search; a missing, foreign or unfinished one is an error."""
        if not self.path.exists():
            raise FileNotFoundError(f"index folder {self.path} does not exist")
        identity = self.identity()
        if identity is None:
            raise SearchError(
                f"{self.path} is not a harma-zoo search index (no {IDENTITY}); make one with harma-zoo index"
            )
        committed = self.committed()
        if committed is None:
            raise SearchError(
                f"index {self.path} has nothing committed yet (its first harma-zoo index run did not finish); "
                "run it again to finish it"
            )
        return identity, committed

    def committed(self) -> Committed | None:
        path = self.path / MANIFEST
        if not path.is_file():
            return None
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as error:
            raise SearchError(f"cannot read manifest {path}: {error}") from None
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        if "generation" not in meta:
            raise SearchError(f"manifest {path} has no {META_KEY.decode()} metadata; the index folder is damaged")
        committed = Committed(
            table.replace_schema_metadata(None),
            meta["generation"],
            meta["next_id"],
            meta["kind"],
            meta["nlist"],
            meta["pq"],
        )
        for name in (committed.vectors_file, committed.index_file):
            if not (self.path / name).is_file():
                raise SearchError(f"index {self.path} lacks {name}, which its manifest names; the folder is damaged")
        return committed

    def vectors(self, committed: Committed) -> np.ndarray:
        """The committed vectors, memory-mapped read-only (rows follow the manifest)."""
        return np.load(self.path / committed.vectors_file, mmap_mode="r")

    def shard_tables(self) -> Iterator[tuple[Path, pa.Table]]:
        """Every finished shard, in name order; one that cannot be read is skipped (its items are embedded again)."""
        for path in sorted(self.shards.glob("*.parquet")) if self.shards.is_dir() else ():
            try:
                yield path, pq.read_table(path)
            except (pa.ArrowException, OSError):
                continue

    # --- writing -------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Refuse to build an index over a folder that holds something else."""
        if self.path.exists() and not self.path.is_dir():
            raise SearchError(f"--out {self.path} is a file; expected a new folder or an index folder")
        if (
            self.path.is_dir()
            and not (self.path / IDENTITY).is_file()
            and any(path.name != LOCK for path in self.path.iterdir())
        ):
            raise SearchError(
                f"--out {self.path} is a folder that is not a harma-zoo search index (no {IDENTITY}); "
                "give a new or empty folder"
            )

    def write_identity(self, identity: ModelIdentity) -> None:
        self.shards.mkdir(parents=True, exist_ok=True)
        durable_write(self.path / IDENTITY, lambda temporary: temporary.write_text(identity.to_json()))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time: a second ``harma-zoo index`` on the same folder is refused, not interleaved."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SearchError(f"index {self.path} is being written by another harma-zoo index run") from None
            yield
        finally:
            os.close(fd)

    def write_shard(self, table: pa.Table, process: int = 0) -> Path:
        """A new shard, named ``PROCESS-UNIQUE.parquet`` by the process (torchrun rank) that embedded it."""
        path = self.shards / f"{process}-{uuid.uuid4().hex}.parquet"
        durable_write(path, lambda temporary: pq.write_table(table, temporary))
        return path

    def faiss_index(self, committed: Committed) -> faiss.Index:
        return faiss.read_index(str(self.path / committed.index_file))

    def commit(
        self,
        manifest: pa.Table,
        fill_vectors: Callable[[np.ndarray], None],
        build_index: Callable[[np.ndarray], faiss.Index],
        meta: dict[str, Any],
        previous: Committed | None,
    ) -> Committed:
        """Write the next generation: vectors (``fill_vectors`` fills them), the FAISS index over them, then the
        manifest, which commits them. ``meta`` holds next_id, kind, nlist, pq and dim."""
        generation = (previous.generation if previous else 0) + 1
        state = Committed(manifest, generation, meta["next_id"], meta["kind"], meta["nlist"], meta["pq"])

        def write_vectors(temporary: Path) -> None:
            out = np.lib.format.open_memmap(
                temporary, mode="w+", dtype=np.float32, shape=(manifest.num_rows, meta["dim"])
            )
            fill_vectors(out)
            out.flush()
            del out

        durable_write(self.path / state.vectors_file, write_vectors)
        index = build_index(self.vectors(state))
        durable_write(self.path / state.index_file, lambda temporary: faiss.write_index(index, str(temporary)))
        stored = {"generation": generation, **{key: meta[key] for key in ("next_id", "kind", "nlist", "pq", "dim")}}
        with_meta = manifest.replace_schema_metadata({META_KEY: json.dumps(stored).encode()})
        durable_write(self.path / MANIFEST, lambda temporary: pq.write_table(with_meta, temporary))
        return state

    def remove_uncommitted(self, committed: Committed | None, shards: bool) -> None:
        """Delete what no commit names: other generations, temporary files and, with ``shards``, every shard."""
        keep = {committed.vectors_file, committed.index_file} if committed else set()
        for path in self.path.iterdir():
            generation_file = path.name.startswith(("vectors-", "index-")) and path.name not in keep
            if generation_file or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        if self.shards.is_dir():
            for path in self.shards.iterdir():
                if shards or path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
