"""Shared fixtures and the rules that keep the suite offline and honest."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from http_helpers import serving

from harma_zoo.hub.index import ZooIndex, load_index

# No test may reach a model hub: every hub client is told it is offline, unless the
# run asks for the tests that need real weights (HARMA_ZOO_ONLINE=1, where hubs are reachable).
if os.environ.get("HARMA_ZOO_ONLINE") != "1":
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_weights = pytest.mark.skip(
        reason="needs pretrained weights from a hub; set HARMA_ZOO_ONLINE=1 where one is reachable"
    )
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    for item in items:
        if "needs_weights" in item.keywords and os.environ.get("HARMA_ZOO_ONLINE") != "1":
            item.add_marker(skip_weights)
        if "needs_gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """The real data beside the project; tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="module")
def shipped() -> ZooIndex:
    """The project's own registry, as shipped."""
    return load_index(PROJECT / "registry")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on 127.0.0.1 serving a folder: (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    with serving(httpd):
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A copy of the shipped registry with no published checkpoint, inside a project root of its own."""
    folder = tmp_path / "project" / "registry"
    shutil.copytree(PROJECT / "registry", folder)
    (folder / "checkpoints.yaml").write_text("[]\n")
    return folder
