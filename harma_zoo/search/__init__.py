"""Archive search with an adapter: index an image archive or GeoTIFF scenes, search it by a sentence or an image.

::

    from harma_zoo.search import SearchIndex, index_archive, search

    index_archive("archive/", "harma_tiny-vit-rsicd-source_rsicd", "archive.index")
    for hit in search("archive.index", "many planes parked next to a long terminal", k=5):
        print(hit.rank, f"{hit.score:.3f}", hit.path)

``harma-zoo index``, ``search`` and ``serve`` are the same from the command line (docs/search.md).
"""

from harma_zoo.search.errors import SearchError
from harma_zoo.search.geo import write_synthetic_scene
from harma_zoo.search.geojson import hits_geojson
from harma_zoo.search.indexer import IndexReport, index_archive
from harma_zoo.search.searcher import Hit, SearchIndex, search
from harma_zoo.search.vector_index import IndexOptions

__all__ = [
    "Hit",
    "IndexOptions",
    "IndexReport",
    "SearchError",
    "SearchIndex",
    "hits_geojson",
    "index_archive",
    "search",
    "write_synthetic_scene",
]
