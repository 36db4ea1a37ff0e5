"""The downloader against a hostile server on 127.0.0.1: an HTML error page, a body cut short without a
length, a stream without end, a redirect to ftp://, a server that stalls; files without a published sha256;
and `fetch --force`. Each case is a real HTTP exchange."""

from __future__ import annotations

import functools
import hashlib
import random
import socket
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from http_helpers import serving

from harma_zoo.hub.download import ChecksumError, FetchError, fetch, recorded_sha256

BODY = random.Random(1).randbytes(450_000)  # the size of a published adapter
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class _Hostile(BaseHTTPRequestHandler):
    """Each path is one misbehaviour; ``server.sent`` counts the body bytes written."""

    protocol_version = "HTTP/1.0"  # the connection's end is the body's end when no length is sent
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def _head(self, status: int = 200, kind: str = "application/octet-stream", length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.server.sent += len(data)

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path == "/good.bin":
            self._head(length=len(BODY))
            self._write(BODY)
        elif self.path == "/error-page.bin":  # a CDN's "not found" page, with status 200
            page = b"<html><body>File not found</body></html>"
            self._head(kind="text/html; charset=utf-8", length=len(page))
            self._write(page)
        elif self.path == "/cut-without-length.bin":  # half the body, then the connection closes
            self._head()
            self._write(BODY[: len(BODY) // 2])
        elif self.path == "/endless.bin":  # no length, and it would not stop (here: after 20 x the size)
            self._head()
            try:
                for _ in range(20 * len(BODY) // 65536):
                    self._write(b"\0" * 65536)
            except OSError:  # the client hung up
                pass
        elif self.path == "/to-ftp.bin":
            self.send_response(302)
            self.send_header("Location", f"ftp://127.0.0.1:{self.server.silent_port}/good.bin")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/stall.bin":  # headers and a little, then silence
            self._head(length=len(BODY))
            self._write(BODY[:1000])
            self.wfile.flush()
            time.sleep(8)
        else:
            self._head(404, length=0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, silent_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _Hostile)
        self.requests: list[str] = []
        self.sent = 0
        self.silent_port = silent_port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (what an FTP server that hangs looks like)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def server(silent_port: int) -> Iterator[_Server]:
    with serving(_Server(silent_port)) as httpd:
        yield httpd


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def get(cache: Path) -> Callable[..., Path]:
    return functools.partial(fetch, cache_dir=cache, progress=False, backoff=0, retries=1, timeout=5)


def _cached(cache: Path) -> list[str]:
    return sorted(path.name for path in cache.rglob("*") if path.is_file()) if cache.exists() else []


def test_an_html_page_is_refused_and_nothing_is_kept(server: _Server, get, cache: Path) -> None:
    with pytest.raises(FetchError, match="HTML page"):
        get(server.url("/error-page.bin"))
    assert _cached(cache) == []
    assert server.requests == ["/error-page.bin"]  # not retried: asking again gives the same page


def test_a_body_cut_short_without_a_length_is_never_stored(server: _Server, get, cache: Path) -> None:
    with pytest.raises(FetchError, match="no Content-Length"):
        get(server.url("/cut-without-length.bin"))
    assert _cached(cache) == []
    # With the registry's size the body's end is known: a short one is a cut connection (resumed, then refused)
    with pytest.raises(FetchError, match=f"connection closed after {len(BODY) // 2} of {len(BODY)} bytes"):
        get(server.url("/cut-without-length.bin"), size=len(BODY))
    assert _cached(cache) == ["cut-without-length.bin.part"]  # kept to resume from, never under the final name


def test_an_endless_stream_stops_at_the_registry_size(server: _Server, get, cache: Path) -> None:
    with pytest.raises(ChecksumError, match=f"more than the {len(BODY)} bytes"):
        get(server.url("/endless.bin"), size=len(BODY))
    assert _cached(cache) == []


def test_a_length_other_than_the_registry_size_is_refused_before_the_body(server: _Server, get) -> None:
    with pytest.raises(ChecksumError, match=f"announces {len(BODY)} bytes, the registry states 1000"):
        get(server.url("/good.bin"), size=1000)
    assert get(server.url("/good.bin"), size=len(BODY)).read_bytes() == BODY


def test_a_redirect_to_ftp_is_not_followed(server: _Server, get) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="only redirects to http"):
        get(server.url("/to-ftp.bin"), timeout=30)
    assert time.monotonic() - started < 5  # refused at once, not after a wait on the silent FTP port


def test_a_stalled_server_is_given_up_within_the_stated_timeout(server: _Server, get, cache: Path) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="sent nothing for 1 s"):
        get(server.url("/stall.bin"), timeout=1, retries=1)
    assert time.monotonic() - started < 2 * 1 + 3  # (retries + 1) x timeout, and the connects
    assert not any(name == "stall.bin" for name in _cached(cache))


def test_without_a_sha256_the_first_download_is_recorded_and_then_checked(server: _Server, get, cache: Path) -> None:
    path = get(server.url("/good.bin"))
    assert recorded_sha256(path) == BODY_SHA
    path.write_bytes(b"<html>replaced in the cache</html>")
    assert get(server.url("/good.bin")).read_bytes() == BODY  # the bad copy did not match the record
    assert server.requests == ["/good.bin", "/good.bin"]
    assert get(server.url("/good.bin")) == path and len(server.requests) == 2  # a good copy is served as it is


def test_force_downloads_again(server: _Server, get) -> None:
    get(server.url("/good.bin"), BODY_SHA)
    assert get(server.url("/good.bin"), BODY_SHA, force=True).read_bytes() == BODY
    assert server.requests == ["/good.bin", "/good.bin"]


def test_fetch_force_and_the_recorded_sha256_on_the_command_line(server: _Server, tmp_path: Path, capsys) -> None:
    import shutil

    import yaml

    from harma_zoo.cli import main

    registry = tmp_path / "project" / "registry"
    shutil.copytree(Path(__file__).resolve().parents[1] / "registry", registry)
    (registry / "checkpoints.yaml").write_text("[]\n")
    entries = yaml.safe_load((registry / "backbones.yaml").read_text())
    entries.append({"name": "unhashed", "family": "open_clip", "architecture": {"arch": "harma-tiny-vit"},
                    "weights": {"kind": "url", "source": server.url("/good.bin"), "sha256": None},
                    "license": "test", "citation": "test"})  # fmt: skip
    (registry / "backbones.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    argv = ["fetch", "unhashed", "--registry", str(registry), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"first download, {BODY_SHA}, is recorded" in " ".join(out.split())
    assert main([*argv, "--force"]) == 0 and server.requests == ["/good.bin", "/good.bin"]
    assert main([*argv, "--timeout", "1"]) == 0 and len(server.requests) == 2  # verified against the record
    entries[-1]["weights"]["source"] = server.url("/error-page.bin")
    (registry / "backbones.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    assert main(argv) == 1
    assert "HTML page" in capsys.readouterr().out
