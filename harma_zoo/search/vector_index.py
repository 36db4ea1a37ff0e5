"""The FAISS index over an index folder's vectors: exact inner product by default, IVF-PQ beyond memory.

The labels of the FAISS index are row numbers of the vectors file (and of the manifest). The
exact index (``IndexFlatIP``) holds the float32 vectors; IVF-PQ (``IVF{nlist},PQ{pq}``, 8-bit
codes) holds ``pq`` bytes and an 8-byte label per vector, trained on a seeded sample of the
vectors; a later run with the same options keeps its trained quantizers and only re-adds rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from harma_zoo.search.errors import SearchError

__all__ = ["KINDS", "IndexOptions", "build_faiss", "set_nprobe"]

KINDS = ("flat", "ivfpq")
ADD_ROWS = 65_536  # rows copied from the memory-mapped vectors per add()
PQ_CENTROIDS = 256  # 8-bit codes: each sub-quantizer's k-means has 256 centroids


@dataclass(frozen=True)
class IndexOptions:
    """``kind`` ("flat": exact, or "ivfpq"), and for IVF-PQ the inverted lists and the sub-quantizers."""

    kind: str = "flat"
    nlist: int = 1024
    pq: int = 16

    def check(self, dim: int) -> None:
        if self.kind not in KINDS:
            raise SearchError(f"--index must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "ivfpq":
            if self.nlist < 1:
                raise SearchError(f"--nlist must be a positive number of inverted lists, got {self.nlist}")
            if self.pq < 1 or dim % self.pq:
                raise SearchError(f"--pq {self.pq} must divide the embedding dimension {dim}")

    def stored(self) -> dict[str, int | str | None]:
        ivf = self.kind == "ivfpq"
        return {"kind": self.kind, "nlist": self.nlist if ivf else None, "pq": self.pq if ivf else None}


def _training_rows(rows: int, nlist: int) -> np.ndarray:
    """A seeded sample of row numbers, enough for k-means on the lists and on the PQ codebooks."""
    size = min(rows, max(64 * nlist, 64 * PQ_CENTROIDS))
    return np.sort(np.random.default_rng(0).choice(rows, size=size, replace=False))


def _ivfpq(vectors: np.ndarray, options: IndexOptions, previous: faiss.Index | None) -> faiss.Index:
    rows, dim = vectors.shape
    reusable = (
        previous is not None
        and isinstance(previous, faiss.IndexIVFPQ)
        and (previous.d, previous.nlist, previous.pq.M) == (dim, options.nlist, options.pq)
    )
    if reusable:
        index = faiss.clone_index(previous)
        index.reset()
        return index
    need = max(options.nlist, PQ_CENTROIDS)
    if rows < need:
        raise SearchError(
            f"IVF-PQ with --nlist {options.nlist} needs at least {need} vectors to train, the archive gives {rows}; "
            "use the exact index (--index flat) or a smaller --nlist"
        )
    # "np": no polysemous training (a slow reordering of the codes for Hamming filtering, which search does not use)
    index = faiss.index_factory(dim, f"IVF{options.nlist},PQ{options.pq}np", faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(vectors[_training_rows(rows, options.nlist)]))
    return index


def build_faiss(vectors: np.ndarray, options: IndexOptions, previous: faiss.Index | None = None) -> faiss.Index:
    """The FAISS index over ``vectors`` (rows x dim float32, possibly memory-mapped), labels = row numbers."""
    rows, dim = vectors.shape
    options.check(dim)
    index = faiss.IndexFlatIP(dim) if options.kind == "flat" else _ivfpq(vectors, options, previous)
    for start in range(0, rows, ADD_ROWS):
        index.add(np.ascontiguousarray(vectors[start : start + ADD_ROWS]))
    return index


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    """How many inverted lists an IVF search visits (more: slower, closer to exact); no-op for the exact index."""
    if isinstance(index, faiss.IndexIVF):
        if nprobe < 1:
            raise SearchError(f"--nprobe must be a positive number of lists, got {nprobe}")
        index.nprobe = min(nprobe, index.nlist)
