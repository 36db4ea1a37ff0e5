"""Searching an index: by a sentence, by an image, or by an item of the index itself.

Scores are exact: FAISS proposes candidates, and every candidate is scored again as the dot
product of the stored float32 vectors computed in float64 (the products are exact there), the
same way for every row, so identical vectors score identically. Ranks follow the evaluation's
tie rule (``harma_zoo.engine.metric``): the rank of a hit is the number of items that score at
least as high, itself included, so items that tie share the last of their places. For the exact
index the candidates are widened until no item left out can score as high as the k-th hit
(FAISS's own float32 scores are within ``dim * 2**-23`` of the exact ones), so the top k and their
ranks are exact. IVF-PQ proposes approximate candidates; their scores and ranks among
themselves are still exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from PIL import Image

from harma_zoo.api import Pretrained
from harma_zoo.data.images import load_image
from harma_zoo.search.decode import read_item
from harma_zoo.search.errors import SearchError
from harma_zoo.search.identity import load_model
from harma_zoo.search.items import Item, Ring, Window, item_of
from harma_zoo.search.storage import IndexFolder
from harma_zoo.search.vector_index import set_nprobe

__all__ = ["Hit", "SearchIndex", "search"]

ImageQuery = str | Path | bytes | Image.Image  # a file, the bytes of an encoded image, or pixels


@dataclass(frozen=True)
class Hit:
    """One result: its rank (1 = best; tied items share the last of their places) and exact cosine score."""

    rank: int
    score: float
    id: int
    path: str
    window: Window | None
    crs: str | None
    footprint: Ring | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchIndex:
    """An index folder opened for searching; the model is loaded on the first sentence or image query.

    Args:
        folder: the index folder ``harma-zoo index`` wrote.
        device: where the model runs for queries.
        model: another copy of the index's model (a zoo name or adapter file) where the recorded one
            moved; its identity must be the index's.
        nprobe: inverted lists an IVF-PQ index visits per query.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        device: torch.device | str | None = None,
        model: str | Path | None = None,
        nprobe: int = 16,
        registry: str | Path | None = None,
    ) -> None:
        self.folder = IndexFolder(folder)
        self.identity, committed = self.folder.require_index()
        self.manifest = committed.manifest
        self.ids = self.manifest.column("id").to_numpy()
        self.vectors = self.folder.vectors(committed)
        self.index = self.folder.faiss_index(committed)
        self.exact = isinstance(self.index, faiss.IndexFlat)
        set_nprobe(self.index, nprobe)
        self._model_source = model or self.identity.model
        self._device = device
        self._registry = registry
        self._pretrained: Pretrained | None = None

    def __len__(self) -> int:
        return self.manifest.num_rows

    @property
    def pretrained(self) -> Pretrained:
        """The index's model, loaded once; one that makes other vectors than the index's is refused."""
        if self._pretrained is None:
            pretrained, identity = load_model(self._model_source, self._device, self._registry)
            if not identity.same_vectors_as(self.identity):
                raise SearchError(
                    f"index {self.folder.path} holds vectors of {self.identity.describe()}, but the model loaded for "
                    f"queries is {identity.describe()}"
                )
            self._pretrained = pretrained
        return self._pretrained

    # --- queries ---------------------------------------------------------------------

    def search(self, query: str | None = None, *, image: ImageQuery | None = None, k: int = 20) -> list[Hit]:
        """The ``k`` best items for a sentence, or (``image=``) for an image file or PIL image."""
        if (query is None) == (image is None):
            raise SearchError("give a sentence or an image to search by (one of them)")
        return self.search_texts([query], k)[0] if query is not None else self.search_images([image], k)[0]

    def search_texts(self, texts: Sequence[str], k: int = 20, batch_size: int = 64) -> list[list[Hit]]:
        """The ``k`` best items for each sentence, embedded ``batch_size`` at a time."""
        return self.search_vectors(self.embed_texts(texts, batch_size), k)

    def search_images(self, images: Sequence[ImageQuery], k: int = 20, batch_size: int = 64) -> list[list[Hit]]:
        """The ``k`` best items per image (file, bytes or PIL image); one that does not decode is an error."""
        return self.search_vectors(self.embed_images(images, batch_size), k)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """The model's embeddings of ``texts`` (rows, float32), as the index's vectors compare with them."""
        pretrained = self.pretrained
        vectors = [np.zeros((0, self.identity.dim), np.float32)]
        for start in range(0, len(texts), batch_size):
            with torch.no_grad():
                tokens = pretrained.tokenizer(list(texts[start : start + batch_size]))
                vectors.append(pretrained.model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(vectors)

    def embed_images(self, images: Sequence[ImageQuery], batch_size: int = 64) -> np.ndarray:
        """The model's embeddings of ``images`` (files, encoded bytes or PIL images)."""
        pretrained = self.pretrained
        device = next(pretrained.model.parameters()).device
        vectors = [np.zeros((0, self.identity.dim), np.float32)]
        for start in range(0, len(images), batch_size):
            chunk = [_as_image(image) for image in images[start : start + batch_size]]
            pixels = torch.stack([pretrained.transform(image) for image in chunk]).to(device)
            with torch.no_grad():
                vectors.append(pretrained.model.encode_image(pixels).float().cpu().numpy())
        return np.concatenate(vectors)

    def search_ids(self, ids: Sequence[int], k: int = 20) -> list[list[Hit]]:
        """The ``k`` best items for items of the index, by their stored vectors ("more like this")."""
        return self.search_vectors(np.stack([self.vectors[self.row_of(i)] for i in ids]), k)

    def search_vectors(self, queries: np.ndarray, k: int = 20) -> list[list[Hit]]:
        """The ``k`` best items for each query vector (rows of ``queries``), exactly scored and ranked."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise SearchError(f"k must be a positive number of results, got {k!r}")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.identity.dim:
            raise SearchError(f"query vectors must be N x {self.identity.dim}, got shape {queries.shape}")
        if len(queries) == 0:
            return []
        k = min(k, len(self))
        results: list[list[Hit] | None] = [None] * len(queries)
        pending = np.arange(len(queries))
        wanted = min(len(self), 2 * k + 16)
        while len(pending):
            approx, rows = self.index.search(queries[pending], wanted)
            widen = []
            for query, found_scores, found_rows in zip(pending, approx, rows, strict=True):
                keep = found_rows >= 0
                hits, complete = self._ranked(queries[query], found_rows[keep], found_scores[keep], k, wanted)
                if complete:
                    results[query] = hits
                else:
                    widen.append(query)
            pending = np.asarray(widen, dtype=np.int64)
            wanted = min(len(self), wanted * 4)
        return results  # type: ignore[return-value]

    def _ranked(
        self, query: np.ndarray, rows: np.ndarray, approx: np.ndarray, k: int, wanted: int
    ) -> tuple[list[Hit], bool]:
        """Candidates scored exactly and ranked; ``complete`` unless an item left out might still rank in the top k."""
        rows = np.sort(rows)  # reading the memory map in order
        exact = _exact_scores(np.asarray(self.vectors[rows]), query)
        order = np.lexsort((self.ids[rows], -exact))[:k]
        kth = exact[order[-1]]
        if self.exact and wanted < len(self):
            # FAISS's float32 inner products are within dim * 2**-24 * |q| |v| of the exact ones; twice that, to be sure
            bound = 2 * self.identity.dim * 2.0**-23 * float(np.linalg.norm(query))
            if float(approx.min()) + bound >= kth:
                return [], False
        at_least = len(exact) - np.searchsorted(np.sort(exact), exact[order], side="left")  # items scoring >= each
        return [
            self._hit(int(rows[i]), int(rank), float(exact[i])) for i, rank in zip(order, at_least, strict=True)
        ], True

    # --- items -----------------------------------------------------------------------

    def row_of(self, item_id: int) -> int:
        row = int(np.searchsorted(self.ids, item_id))
        if row >= len(self.ids) or self.ids[row] != item_id:
            raise SearchError(f"index {self.folder.path} has no item with id {item_id}")
        return row

    def item(self, item_id: int) -> Item:
        return item_of(self.manifest.slice(self.row_of(item_id), 1).to_pylist()[0])

    def image(self, item_id: int) -> Image.Image:
        """The pixels of an item (its file, or its chip of the scene)."""
        return read_item(self.item(item_id))

    def _hit(self, row: int, rank: int, score: float) -> Hit:
        item = item_of(self.manifest.slice(row, 1).to_pylist()[0])
        return Hit(rank, score, int(self.ids[row]), item.path, item.window, item.crs, item.footprint)


def _exact_scores(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Dot products in float64, each row summed the same way (numpy's pairwise sum along the row)."""
    return (vectors.astype(np.float64) * query.astype(np.float64)).sum(axis=1)


def _as_image(image: ImageQuery) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, bytes):
        return load_image(image, "query")
    return load_image(str(image), str(image))


def search(
    index: str | Path,
    query: str | None = None,
    *,
    image: ImageQuery | None = None,
    k: int = 20,
    device: torch.device | str | None = None,
) -> list[Hit]:
    """One query against an index folder: ``search("INDEX", "many planes")`` or ``search("INDEX", image="a.jpg")``."""
    return SearchIndex(index, device=device).search(query, image=image, k=k)
