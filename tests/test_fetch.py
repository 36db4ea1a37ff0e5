"""The zoo's downloader against a real HTTP server on 127.0.0.1 that can be told to misbehave:
fail with 500, cut the connection half-way, ignore Range, serve slowly; plus hf:// from an
offline hub cache laid out here, and local files."""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from http_helpers import serving

from harma_zoo.hub import download as fetch_module
from harma_zoo.hub.download import ChecksumError, FetchError, fetch, sha256_file, zoo_home

DATA = random.Random(0).randbytes(1_000_000)
DATA_SHA = hashlib.sha256(DATA).hexdigest()
OTHER_SHA = hashlib.sha256(b"something else").hexdigest()
SERVE_CHUNK = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        state = self.server
        wanted = self.headers.get("Range")
        with state.lock:
            state.requests.append((self.path, wanted))
            fail = state.fail_first > 0
            state.fail_first -= fail
        body = state.files.get(self.path)
        if fail or body is None:
            self.send_error(500 if fail else 404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1]) if wanted and not state.ignore_range else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        with state.lock:
            cut, state.cut_after = state.cut_after, None
        payload = body[start:][:cut]
        for offset in range(0, len(payload), SERVE_CHUNK):
            self.wfile.write(payload[offset : offset + SERVE_CHUNK])
            time.sleep(state.delay)
        # with HTTP/1.0 the connection closes here; after a cut the client sees a short body


class _Server(ThreadingHTTPServer):
    """Serves ``files`` by path; each test dials in the misbehaviour it needs."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {"/zoo/adapter.bin": DATA}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.fail_first = 0  # answer 500 to this many requests
        self.cut_after: int | None = None  # cut the next body after this many bytes, once
        self.ignore_range = False
        self.delay = 0.0  # seconds after each 64 KiB
        self.lock = threading.Lock()

    def url(self, path: str = "/zoo/adapter.bin") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    with serving(_Server()) as httpd:
        yield httpd


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def get(cache: Path) -> Callable[..., Path]:
    """``fetch`` into the test's cache, quietly and without sleeping between retries."""
    return functools.partial(fetch, cache_dir=cache, progress=False, backoff=0)


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def test_zoo_home_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HARMA_ZOO_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo_home() == tmp_path / "home" / ".cache" / "harma_zoo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo_home() == tmp_path / "xdg" / "harma_zoo"
    monkeypatch.setenv("HARMA_ZOO_HOME", str(tmp_path / "zoo"))
    assert zoo_home() == tmp_path / "zoo"


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA * 3)  # several hash chunks
    assert sha256_file(path) == hashlib.sha256(DATA * 3).hexdigest()


def test_good_file_is_verified_placed_and_then_served_from_the_cache(
    server: _Server, cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARMA_ZOO_HOME", str(cache.parent / "default-home"))
    path = fetch(server.url(), DATA_SHA.upper(), backoff=0)  # with the progress bar, into zoo_home()
    assert path == zoo_home() / "downloads" / DATA_SHA / "adapter.bin"
    assert path.read_bytes() == DATA
    assert _files(zoo_home()) == [path]  # no .part, no .lock left behind
    assert capsys.readouterr().out == ""  # the bar goes to stderr
    assert fetch(server.url(), DATA_SHA, progress=False) == path
    assert len(server.requests) == 1  # the second call made no request


def test_corrupted_cached_file_is_downloaded_again(server: _Server, get: Callable[..., Path]) -> None:
    path = get(server.url(), DATA_SHA)
    path.write_bytes(b"bit rot")
    assert get(server.url(), DATA_SHA) == path
    assert path.read_bytes() == DATA
    assert len(server.requests) == 2


def test_without_a_hash_the_url_is_the_key(server: _Server, get: Callable[..., Path], cache: Path) -> None:
    server.files["/other/adapter.bin"] = b"another adapter"
    path = get(server.url())
    assert path == cache / hashlib.sha256(server.url().encode()).hexdigest() / "adapter.bin"
    other = get(server.url("/other/adapter.bin"))
    assert other.name == path.name and other != path  # same name, different files: no collision
    assert (path.read_bytes(), other.read_bytes()) == (DATA, b"another adapter")
    assert get(server.url()) == path
    assert len(server.requests) == 2


def test_hash_mismatch_names_both_hashes_and_the_url_and_keeps_nothing(
    server: _Server, get: Callable[..., Path], cache: Path
) -> None:
    with pytest.raises(ChecksumError) as raised:
        get(server.url(), OTHER_SHA)
    assert OTHER_SHA in str(raised.value) and DATA_SHA in str(raised.value) and server.url() in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert _files(cache) == []


def test_cut_connection_is_resumed_with_a_range_request(server: _Server, get: Callable[..., Path]) -> None:
    server.cut_after = 300_000
    assert get(server.url(), DATA_SHA).read_bytes() == DATA
    assert server.requests == [("/zoo/adapter.bin", None), ("/zoo/adapter.bin", "bytes=300000-")]


def test_a_fresh_call_resumes_from_the_part_a_failed_call_left(
    server: _Server, get: Callable[..., Path], cache: Path
) -> None:
    server.cut_after = 400_000
    with pytest.raises(FetchError, match=re.escape(server.url())):
        get(server.url(), DATA_SHA, retries=0)
    part = cache / DATA_SHA / "adapter.bin.part"
    assert _files(cache) == [part] and part.stat().st_size == 400_000
    assert get(server.url(), DATA_SHA).read_bytes() == DATA
    assert server.requests[-1] == ("/zoo/adapter.bin", "bytes=400000-")
    assert _files(cache) == [cache / DATA_SHA / "adapter.bin"]


def test_a_server_that_ignores_range_makes_the_download_start_over(server: _Server, get: Callable[..., Path]) -> None:
    server.ignore_range = True
    server.cut_after = 300_000
    assert get(server.url(), DATA_SHA).read_bytes() == DATA  # not the first 300 kB twice
    assert [header for _, header in server.requests] == [None, "bytes=300000-"]


def test_a_leftover_part_the_server_cannot_extend_is_dropped(
    server: _Server, get: Callable[..., Path], cache: Path
) -> None:
    part = cache / DATA_SHA / "adapter.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(bytes(len(DATA) + 10))  # longer than the file: the server answers 416
    assert get(server.url(), DATA_SHA).read_bytes() == DATA
    assert [header for _, header in server.requests] == [f"bytes={len(DATA) + 10}-", None]


def test_transient_server_errors_are_retried(server: _Server, get: Callable[..., Path]) -> None:
    server.fail_first = 2
    assert get(server.url(), DATA_SHA, retries=2).read_bytes() == DATA
    assert len(server.requests) == 3


def test_persistent_server_errors_end_in_an_error_naming_the_url(
    server: _Server, get: Callable[..., Path], cache: Path
) -> None:
    server.fail_first = 10
    with pytest.raises(FetchError, match=rf"{re.escape(server.url())} after 3 tries.*500"):
        get(server.url(), DATA_SHA, retries=2)
    assert len(server.requests) == 3
    assert _files(cache) == []


def test_not_found_is_not_retried(server: _Server, get: Callable[..., Path]) -> None:
    with pytest.raises(FetchError, match=rf"{re.escape(server.url('/missing.bin'))}: HTTP 404"):
        get(server.url("/missing.bin"), DATA_SHA)
    assert len(server.requests) == 1


def test_connection_errors_are_retried_with_a_growing_backoff(
    get: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/zoo/adapter.bin"
    sleeps: list[float] = []
    monkeypatch.setattr(fetch_module.time, "sleep", sleeps.append)
    with pytest.raises(FetchError, match=rf"{re.escape(url)} after 4 tries"):
        get(url, DATA_SHA, backoff=0.5)
    assert sleeps == [0.5, 1.0, 2.0]


def _fetch_in_a_process(
    barrier: multiprocessing.synchronize.Barrier, url: str, cache: str, results: multiprocessing.Queue
) -> None:
    barrier.wait()
    start = time.monotonic()
    path = fetch(url, DATA_SHA, cache_dir=Path(cache), progress=False)
    results.put((str(path), start, time.monotonic()))


def test_two_processes_fetching_one_file_download_it_once(server: _Server, cache: Path) -> None:
    server.delay = 0.04  # about 0.6 s for the whole file: the second process arrives while the first downloads
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_fetch_in_a_process, args=(barrier, server.url(), str(cache), results)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0
    (first, *_), (second, *_) = outcomes
    assert first == second == str(cache / DATA_SHA / "adapter.bin")
    assert max(start for _, start, _ in outcomes) < min(end for _, _, end in outcomes)  # they did overlap
    assert len(server.requests) == 1
    assert Path(first).read_bytes() == DATA
    assert _files(cache) == [Path(first)]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline hub cache holding owner/repo at one commit, with weights/adapter.bin in it."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "hub" / "models--owner--repo"
    commit = "c0ffee" + "0" * 34
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot_file = repo / "snapshots" / commit / "weights" / "adapter.bin"
    snapshot_file.parent.mkdir(parents=True)
    snapshot_file.write_bytes(DATA)
    return tmp_path / "hub"


def test_hf_urls_come_through_the_hub_cache(hub: Path, get: Callable[..., Path], cache: Path) -> None:
    path = get("hf://owner/repo/weights/adapter.bin", DATA_SHA, hf_cache_dir=hub)
    assert path == cache / DATA_SHA / "adapter.bin"
    assert path.read_bytes() == DATA
    commit = (hub / "models--owner--repo" / "refs" / "main").read_text()
    pinned = get(f"hf://owner/repo/weights/adapter.bin@{commit}", filename="pinned.bin", hf_cache_dir=hub)
    assert pinned.read_bytes() == DATA and pinned.name == "pinned.bin"


def test_hf_errors_are_clear(hub: Path, get: Callable[..., Path], cache: Path) -> None:
    with pytest.raises(ChecksumError, match=OTHER_SHA):
        get("hf://owner/repo/weights/adapter.bin", OTHER_SHA, hf_cache_dir=hub)
    assert _files(cache) == []
    assert sha256_file(next(hub.rglob("adapter.bin"))) == DATA_SHA  # the hub's own copy is left alone
    with pytest.raises(FetchError, match="hf://owner/repo/missing.bin"):
        get("hf://owner/repo/missing.bin", hf_cache_dir=hub)
    with pytest.raises(ValueError, match="hf://OWNER/REPO"):
        get("hf://owner/repo", hf_cache_dir=hub)


def test_local_files_are_copied_in(
    tmp_path: Path, get: Callable[..., Path], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "my adapter.bin"
    source.write_bytes(DATA)
    path = get(source.as_uri(), DATA_SHA)
    assert path == cache / DATA_SHA / "my adapter.bin" and path.read_bytes() == DATA
    monkeypatch.chdir(tmp_path)
    unhashed = get("my adapter.bin")  # a plain relative path is keyed by its absolute file:// URL
    assert unhashed.parent.name == hashlib.sha256(source.as_uri().encode()).hexdigest()
    with pytest.raises(ChecksumError, match=OTHER_SHA):
        get(str(source), OTHER_SHA, filename="other.bin")
    with pytest.raises(FetchError, match="missing.bin"):
        get(str(tmp_path / "missing.bin"))
    assert _files(cache) == sorted([path, unhashed, Path(f"{unhashed}.sha256")])  # its first sha256, recorded


def test_bad_arguments_are_refused_before_any_request(server: _Server, get: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="scheme 'ftp'"):
        get("ftp://example.org/adapter.bin")
    with pytest.raises(ValueError, match="not a sha256"):
        get(server.url(), "abc123")
    with pytest.raises(ValueError, match="filename="):
        get(server.url("/zoo/"))
    with pytest.raises(ValueError, match="filename="):
        get(server.url(), filename="../escape.bin")
    assert server.requests == []
