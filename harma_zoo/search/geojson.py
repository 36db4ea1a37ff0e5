"""Search results as GeoJSON (RFC 7946): footprints in EPSG:4326, with rank, score and path, ready for QGIS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harma_zoo.search.geo import footprint_lonlat
from harma_zoo.search.searcher import Hit

__all__ = ["hits_geojson"]


def hits_geojson(hits: Sequence[Hit], query: str = "") -> dict[str, Any]:
    """A FeatureCollection, one feature per hit; a hit without a footprint (a plain image) has no geometry."""
    features = []
    for hit in hits:
        geometry = None
        if hit.footprint is not None and hit.crs is not None:
            geometry = {"type": "Polygon", "coordinates": [footprint_lonlat(hit.footprint, hit.crs)]}
        col, row, width, height = hit.window if hit.window is not None else (None, None, None, None)
        properties = {
            "rank": hit.rank,
            "score": hit.score,
            "path": hit.path,
            "id": hit.id,
            "col_off": col,
            "row_off": row,
            "width": width,
            "height": height,
            "crs": hit.crs,
        }
        features.append({"type": "Feature", "id": hit.id, "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "name": query or "harma-zoo search", "features": features}
