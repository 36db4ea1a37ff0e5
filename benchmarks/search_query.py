"""Query latency, recall and size of a search index over synthetic vectors, exact and IVF-PQ.

Run as ``python -m benchmarks.search_query '{"vectors": 100000, "dim": 512, "kind": "flat", ...}'``.
Vectors are clustered like embeddings (1,024 random unit centres, each vector a centre plus noise,
normalised); queries are noisy copies of stored vectors. The index folder is written through
``harma_zoo.search.storage`` as ``harma-zoo index`` writes it; queries go through
``SearchIndex.search_vectors`` one at a time (FAISS candidates, exact rescoring), with FAISS on one
thread as ``harma-zoo serve`` runs it: the latency a single user waits for, minus the text encoder.
IVF-PQ's recall@10 is against the exact top 10 (brute force in float64). Bytes per vector: on disk,
each file of the folder; in memory, the growth of the process's RSS once the index is open and has
answered the queries (memory-mapped vector pages it read count too).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa

from benchmarks._proc import current_rss_mib, emit, worker_args
from harma_zoo.search import IndexOptions, SearchIndex
from harma_zoo.search.identity import ModelIdentity
from harma_zoo.search.items import RECORD_SCHEMA
from harma_zoo.search.storage import IndexFolder
from harma_zoo.search.vector_index import build_faiss

CENTRES = 1024
CHUNK = 65_536


def clustered(rows: int, dim: int, start: int, seed: int = 0) -> np.ndarray:
    """Rows ``start .. start + rows`` of the synthetic collection (the same rows whatever the chunking)."""
    centres = np.random.default_rng(seed).standard_normal((CENTRES, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng([seed, start])
    vectors = centres[rng.integers(0, CENTRES, rows)] + rng.standard_normal((rows, dim)).astype(np.float32) * 0.06
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def manifest(rows: int) -> pa.Table:
    ids = pa.array(np.arange(rows, dtype=np.int64))
    paths = pa.array([f"synthetic/{i:08d}.jpg" for i in range(rows)])
    nulls = {name: pa.nulls(rows, RECORD_SCHEMA.field(name).type) for name in ("window", "footprint", "crs")}
    zeros = pa.array(np.zeros(rows, dtype=np.int64))
    return pa.table({"id": ids, "path": paths, **nulls, "size": zeros, "mtime_ns": zeros}, schema=RECORD_SCHEMA)


def write_index(folder: IndexFolder, rows: int, dim: int, options: IndexOptions) -> float:
    folder.write_identity(ModelIdentity("synthetic vectors", "0" * 64, "0" * 64, dim))

    def fill(out: np.ndarray) -> None:
        for start in range(0, rows, CHUNK):
            out[start : start + CHUNK] = clustered(min(CHUNK, rows - start), dim, start)

    started = time.perf_counter()
    meta = {"next_id": rows, "dim": dim, **options.stored()}
    folder.commit(manifest(rows), fill, lambda vectors: build_faiss(vectors, options), meta, None)
    return time.perf_counter() - started


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    """The exact top ``k`` rows of each query (float64 dot products), a chunk of rows at a time."""
    best_scores = np.full((len(queries), 0), -np.inf)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), CHUNK):
        chunk = vectors[start : start + CHUNK].astype(np.float64)
        scores = np.concatenate([best_scores, queries.astype(np.float64) @ chunk.T], axis=1)
        here = np.broadcast_to(np.arange(start, start + len(chunk)), (len(queries), len(chunk)))
        rows = np.concatenate([best_rows, here], axis=1)
        keep = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores, best_rows = np.take_along_axis(scores, keep, 1), np.take_along_axis(rows, keep, 1)
    return [set(row.tolist()) for row in best_rows]


def main() -> None:
    args: dict[str, Any] = worker_args()
    faiss.omp_set_num_threads(1)
    rows, dim, k = args["vectors"], args["dim"], args["k"]
    options = IndexOptions(args["kind"], args.get("nlist", 1024), args.get("pq", 16))
    with tempfile.TemporaryDirectory(dir=args.get("tmp")) as tmp:
        folder = IndexFolder(Path(tmp) / "index")
        build_s = write_index(folder, rows, dim, options)
        disk = {path.name.split("-")[0].split(".")[0]: path.stat().st_size for path in folder.path.iterdir()
                if path.is_file() and path.suffix in (".npy", ".faiss", ".parquet")}  # fmt: skip
        before = current_rss_mib()
        index = SearchIndex(folder.path, nprobe=args.get("nprobe", 16))
        rng = np.random.default_rng(1)
        picked = np.asarray(index.vectors[np.sort(rng.choice(rows, args["queries"], replace=False))])
        queries = picked + rng.standard_normal(picked.shape).astype(np.float32) * 0.03
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        index.search_vectors(queries[:5], k)  # warm-up
        latencies, found = [], []
        for query in queries:
            started = time.perf_counter()
            hits = index.search_vectors(query[None], k)[0]
            latencies.append(time.perf_counter() - started)
            found.append({hit.id for hit in hits})
        memory_mib = current_rss_mib() - before
        recall = None
        if options.kind != "flat":
            truth = exact_top(np.asarray(index.vectors), queries, k)
            recall = float(np.mean([len(a & b) / k for a, b in zip(found, truth, strict=True)]))
    cuts = statistics.quantiles(latencies, n=100)
    emit({
        "vectors": rows,
        "dim": dim,
        **options.stored(),
        "nprobe": args.get("nprobe", 16) if options.kind != "flat" else None,
        "build_s": build_s,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * cuts[94],
        f"recall@{k}": recall,
        "disk_bytes_per_vector": {name: size / rows for name, size in disk.items()},
        "memory_mib": memory_mib,  # at small sizes the libraries' own first allocations dominate
        "memory_bytes_per_vector": memory_mib * 2**20 / rows,
    })  # fmt: skip


if __name__ == "__main__":
    main()
