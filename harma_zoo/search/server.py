"""``harma-zoo serve``: a local web page over an index: a search box, ranked thumbnails, GeoJSON downloads.

Starlette on uvicorn, bound to 127.0.0.1 unless told otherwise. The page and its script are files
of the package (``static/``): nothing is fetched from elsewhere. The JSON API the page uses:

- ``GET /api/search?q=TEXT&k=20``, ``GET /api/search?id=ID&k=20`` (by an item's stored vector),
  ``POST /api/search?k=20`` with an image file as the body;
- ``GET|POST /api/geojson`` with the same parameters: the results as a GeoJSON download;
- ``GET /api/thumb/ID``: a JPEG thumbnail of an item; ``GET /api/info``: the index and its model.

Bad input (an empty query, an unknown id, an upload that does not decode) is answered 400 with
``{"error": "..."}``. The model runs one query at a time (a lock); thumbnails are cached in a
bounded LRU, so memory stays flat under load. FAISS searches run side by side, one thread each.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from harma_zoo.data.images import UnreadableImageError
from harma_zoo.search.errors import SearchError
from harma_zoo.search.geojson import hits_geojson
from harma_zoo.search.searcher import Hit, SearchIndex

__all__ = ["bind", "create_app", "serve"]

STATIC = Path(__file__).parent / "static"
_BAD_QUERY = (SearchError, UnreadableImageError, FileNotFoundError)  # answered 400, with the message
MAX_K = 200
THUMBNAIL_PIXELS = 192
THUMBNAILS_CACHED = 512
MAX_UPLOAD_BYTES = 32 * 2**20


def _k(request: Request) -> int:
    text = request.query_params.get("k", "20")
    try:
        k = int(text)
    except ValueError:
        raise SearchError(f"k must be a whole number of results, got {text!r}") from None
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _hit_json(hit: Hit) -> dict[str, Any]:
    return {**hit.as_dict(), "name": Path(hit.path).name, "thumb": f"/api/thumb/{hit.id}"}


def create_app(index: SearchIndex) -> Starlette:
    """The web application over an opened index (its model loaded now, so the first query is not slow)."""
    index.pretrained  # noqa: B018
    model_lock = threading.Lock()

    async def query(request: Request) -> tuple[str, list[Hit]]:
        """The hits of the query the request carries: a sentence, an item id, or an uploaded image."""
        k = _k(request)
        if request.method == "POST":
            body = await request.body()
            if not body:
                raise SearchError("the upload is empty; send an image file as the request body")
            if len(body) > MAX_UPLOAD_BYTES:
                raise SearchError(f"the upload has {len(body):,} bytes; at most {MAX_UPLOAD_BYTES:,} are taken")
            return "image upload", await _hits(lambda: _encoded(lambda: index.embed_images([body])), k)
        if "id" in request.query_params:
            text = request.query_params["id"]
            if not text.isdigit():
                raise SearchError(f"id must be an item id (a whole number), got {text!r}")
            return f"like #{text}", await _hits(lambda: index.vectors[index.row_of(int(text))][None], k)
        text = request.query_params.get("q", "").strip()
        if not text:
            raise SearchError("give a sentence (q=...), an item id (id=...) or an image upload to search by")
        return text, await _hits(lambda: _encoded(lambda: index.embed_texts([text])), k)

    def _encoded(encode: Callable[[], np.ndarray]) -> np.ndarray:
        with model_lock:  # the model runs one query at a time; FAISS searches run side by side
            return encode()

    async def _hits(vectors: Callable[[], np.ndarray], k: int) -> list[Hit]:
        return await run_in_threadpool(lambda: index.search_vectors(vectors(), k)[0])

    async def search(request: Request) -> Response:
        try:
            label, hits = await query(request)
        except _BAD_QUERY as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"query": label, "hits": [_hit_json(hit) for hit in hits]})

    async def geojson(request: Request) -> Response:
        try:
            label, hits = await query(request)
        except _BAD_QUERY as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        headers = {"Content-Disposition": 'attachment; filename="harma-zoo-results.geojson"'}
        body = json.dumps(hits_geojson(hits, label), indent=1)
        return Response(body, media_type="application/geo+json", headers=headers)

    @functools.lru_cache(maxsize=THUMBNAILS_CACHED)
    def thumbnail(item_id: int) -> bytes:
        image = index.image(item_id)
        image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        return out.getvalue()

    def thumb(request: Request) -> Response:
        try:
            data = thumbnail(request.path_params["item_id"])
        except (SearchError, FileNotFoundError, OSError) as error:
            return JSONResponse({"error": str(error)}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def info(request: Request) -> Response:
        return JSONResponse({"index": str(index.folder.path), "model": index.identity.model, "items": len(index)})

    def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/search", search, methods=["GET", "POST"]),
        Route("/api/geojson", geojson, methods=["GET", "POST"]),
        Route("/api/thumb/{item_id:int}", thumb),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a port in use is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise SearchError(f"port {port} on {host} is in use; choose another with --port") from None
        raise SearchError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    return sock


def serve(
    folder: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    device: str | None = None,
    nprobe: int = 16,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the page over the index at ``folder`` until interrupted; ``announce`` is told the address."""
    sock = bind(host, port)  # a port in use is told before the model is loaded
    # Requests run side by side in threads; a single query gains nothing from FAISS's own threads, and on a
    # busy CPU their hand-offs cost more than the search itself.
    faiss.omp_set_num_threads(1)
    try:
        app = create_app(SearchIndex(folder, device=device, nprobe=nprobe))
    except BaseException:
        sock.close()
        raise
    shown_host = f"[{host}]" if ":" in host else host
    announce(f"serving {folder} at http://{shown_host}:{sock.getsockname()[1]}/ (Ctrl-C to stop)")
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
