"""Download zoo files into a local cache: verified, resumable, atomic, and safe across processes.

A file lands at ``<cache>/<sha256 or a hash of the URL>/<filename>``, so two different files that
share a name never collide, and the same content published under several URLs is stored once.
Only finished and checked files ever carry their final name: bytes arrive in ``<final>.part`` next
to it, are checked (the length announced, the size the registry states, no HTML page, the sha256
when one is given) and are moved into place with ``os.replace``. A file without a published sha256
has the sha256 of its first download recorded in ``<final>.sha256`` (and the caller says so); the
cached copy is checked against it on every later call. A ``<final>.lock`` held with ``fcntl.flock``
makes concurrent fetches of one file, from threads or processes, download it once; the others wait
and then return the finished copy.

A hostile or broken server gets nothing past these checks: a body is bounded by the size the
registry states, a response without a length is refused unless that size is known, an HTML page
(an error or login page) is refused, only redirects to http(s) are followed, and a server silent
for ``timeout`` seconds is given up on (each try; ``retries`` more tries follow).
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from harma_zoo import __version__
from harma_zoo.fileio import atomic_write, lock_current_file

_STREAM_CHUNK = 64 * 1024  # small enough for a lively progress bar
_HASH_CHUNK = 1024 * 1024
_USER_AGENT = f"harma-zoo/{__version__}"
SHA256_PATTERN = r"^[0-9a-f]{64}$"  # a sha256 as the registry writes it: 64 lowercase hex digits
SHA256 = re.compile(SHA256_PATTERN)
# What may succeed when asked again: the server or the network had a bad moment.
_TRANSIENT = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)
_TRANSIENT_STATUSES = {408, 425, 429}  # besides every 5xx
_HTML_TYPES = ("text/html", "application/xhtml+xml")
RECORD_SUFFIX = ".sha256"  # the sha256 of a file's first download, when no sha256 was published


class FetchError(RuntimeError):
    """The file could not be obtained (bad status, network down after every retry, missing source)."""


class ChecksumError(ValueError):
    """The bytes obtained are not the ones the zoo published; nothing was kept."""


class WeightsUnavailable(FileNotFoundError):
    """Weights that no local cache holds and that cannot be downloaded now (offline, hub unreachable).

    Its message is one line that names the weights and says how to provide them; the command
    line prints it as it is, without a traceback.
    """


def unreachable_reason(error: BaseException) -> str:
    """Why a hub download failed, in one line: the hub's offline mode, else the error's first line."""
    from huggingface_hub import is_offline_mode  # imported here: slow to import

    if is_offline_mode():
        return "the Hugging Face Hub is offline (HF_HUB_OFFLINE=1)"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def zoo_home() -> Path:
    """Where the zoo keeps its files: ``$HARMA_ZOO_HOME``, else ``harma_zoo`` in the user's cache folder."""
    if home := os.environ.get("HARMA_ZOO_HOME"):
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "harma_zoo"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so that multi-GB checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    url: str,
    sha256: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    filename: str | None = None,
    size: int | None = None,
    force: bool = False,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 30.0,
    backoff: float = 1.0,
    hf_cache_dir: str | Path | None = None,
) -> Path:
    """Get ``url`` into the cache (once) and return the local path of the finished file.

    Sources: ``https://`` / ``http://`` (streamed, resumed from a leftover ``.part`` with a Range
    request, retried ``retries`` more times on 5xx and network errors, sleeping ``backoff``, then
    twice that, ...; never on other 4xx); ``hf://OWNER/REPO/path/in/repo[@revision]`` through
    ``huggingface_hub.hf_hub_download`` (its own cache, ``hf_cache_dir`` or the default, does the
    transfer; the file is then hard-linked, or copied, into this cache so that zoo files live in
    one layout and survive a cleaned hub cache); ``file://`` URLs and plain local paths (copied).

    With ``sha256`` a cached file is re-hashed on every call (a bad one is fetched again) and a
    download that does not match raises :class:`ChecksumError` and is removed. Without it the
    file is cached under a hash of the URL, and the sha256 of its first download is recorded
    beside it (:func:`recorded_sha256`): later calls check the cached copy against that. ``size``
    (the registry's, when it states one) bounds the download and must match it. ``force``
    downloads again whatever the cache holds. ``filename`` defaults to the last component of the
    URL's path. ``progress`` draws a bar on stderr for HTTP downloads of known size; ``timeout``
    is how many seconds a silent server is waited for, per try.
    """
    url = _as_url(url)
    expected = _expected_sha256(sha256)
    name = _checked_filename(filename or _default_filename(url))
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if size is not None and size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    folder = Path(cache_dir or zoo_home() / "downloads") / (expected or hashlib.sha256(url.encode()).hexdigest())
    final = folder / name
    record = folder / f"{name}{RECORD_SUFFIX}"
    if not force and _is_good(final, expected or recorded_sha256(final)):
        return final
    with _exclusive(folder / f"{name}.lock"):
        if not force and _is_good(final, expected or recorded_sha256(final)):  # another process finished it
            return final
        final.unlink(missing_ok=True)  # a corrupted, unchecked or unwanted copy: the cache only holds good files
        record.unlink(missing_ok=True)
        part = folder / f"{name}.part"
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https"):
            attempt = functools.partial(_http_attempt, url, part, timeout, progress, size)
            _with_retries(attempt, url, retries, backoff, timeout)
        elif scheme == "hf":
            _link_or_copy(_hf_download(url, hf_cache_dir), part)
        else:
            shutil.copyfile(_local_source(url), part)
        _check_size(part, size, url)
        _verify(part, expected, url)
        if expected is None:
            digest = sha256_file(part)
            atomic_write(record, lambda temporary: temporary.write_text(digest + "\n"))
        os.replace(part, final)
    return final


def recorded_sha256(path: str | Path) -> str | None:
    """The sha256 recorded at the first download of a cached file that had none published, else None."""
    record = Path(f"{path}{RECORD_SUFFIX}")
    try:
        text = record.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text if SHA256.fullmatch(text) else None


def _as_url(url: str) -> str:
    """Plain local paths become absolute ``file://`` URLs, so they get one cache key wherever they are run from."""
    if "://" in url:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https", "hf", "file"):
            raise ValueError(f"unsupported URL scheme {scheme!r} in {url}: use https://, http://, hf:// or file://")
        return url
    return Path(url).expanduser().resolve().as_uri()


def _expected_sha256(sha256: str | None) -> str | None:
    """A malformed hash is a typo in a registry entry; say so now rather than as a mismatch later."""
    if sha256 is None:
        return None
    if not SHA256.fullmatch(sha256.lower()):
        raise ValueError(f"not a sha256 (64 hex digits): {sha256!r}")
    return sha256.lower()


def _default_filename(url: str) -> str:
    """The last path component; a URL that ends in ``/`` has none (and needs ``filename=``)."""
    path = _hf_parts(url)[1] if urlsplit(url).scheme == "hf" else unquote(urlsplit(url).path)
    return path.rpartition("/")[2]


def _checked_filename(name: str) -> str:
    """The name becomes a path component; one that is empty or walks out of its folder is refused."""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"cannot store a download as {name!r}: pass filename=")
    return name


def _is_good(path: Path, expected: str | None) -> bool:
    """A cached file is good when its sha256 is the one expected; a file with none to compare is not."""
    return expected is not None and path.is_file() and sha256_file(path) == expected


def _check_size(part: Path, size: int | None, url: str) -> None:
    if size is not None and part.stat().st_size != size:
        got = part.stat().st_size
        part.unlink()
        raise ChecksumError(f"{url} gave {got} bytes, the registry states {size}; the download was removed")


def _verify(part: Path, expected: str | None, url: str) -> None:
    """Wrong bytes are never kept: not as the final file, nor as a ``.part`` to resume from."""
    if expected is None:
        return
    got = sha256_file(part)
    if got != expected:
        part.unlink()
        raise ChecksumError(f"sha256 mismatch for {url}: expected {expected}, got {got}; the download was removed")


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold ``lock`` with flock; on the way out the lock file (and its folder, if empty) is removed.

    Removing a lock file races with a process that opened it just before: that process then holds
    a lock on an orphaned file, notices that the path no longer names it, and tries again.
    """
    fd = lock_current_file(lock, create=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        with suppress(OSError):
            lock.parent.rmdir()  # only succeeds when nothing (no file, no .part) is left
        os.close(fd)


def _with_retries(attempt: Callable[[], None], url: str, retries: int, backoff: float, timeout: float) -> None:
    for failures in range(retries + 1):
        try:
            return attempt()
        except _TRANSIENT as err:
            if failures == retries:
                timed_out = isinstance(err, TimeoutError) or isinstance(getattr(err, "reason", None), TimeoutError)
                why = f"the server sent nothing for {timeout:g} s" if timed_out else str(err)
                raise FetchError(f"could not download {url} after {retries + 1} tries: {why}") from err
            time.sleep(backoff * 2**failures)


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects to ``ftp://`` too (a hostile server sent one that hung for minutes)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme not in ("http", "https"):
            fp.close()
            raise FetchError(f"{req.full_url} redirects to {newurl}: only redirects to http(s) are followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpRedirectsOnly)


def _http_attempt(url: str, part: Path, timeout: float, progress: bool, size: int | None) -> None:
    """One request into ``part``: extends it when the server honours Range, else starts over.

    The body is bounded: by the length the server announces (which must fit the registry's ``size``),
    else by ``size``; a response with neither is refused, since a body cut short could not be told
    from a whole one.
    """
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT} | ({"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:  # the leftover is no prefix the server can extend
            part.unlink()
            return _http_attempt(url, part, timeout, progress, size)
        if err.code >= 500 or err.code in _TRANSIENT_STATUSES:
            raise
        raise FetchError(f"could not download {url}: HTTP {err.code} {err.reason}") from err
    with response:
        kind = response.headers.get_content_type()
        if kind in _HTML_TYPES:
            raise FetchError(f"{url} answered with an HTML page ({kind}), not the file: an error or login page?")
        if response.status == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()
            raise ConnectionError(f"server answered Range bytes={offset}- with {response.headers['Content-Range']}")
        done = offset if response.status == 206 else 0  # 200: the server ignored Range
        length = response.headers.get("Content-Length")
        total = done + int(length) if length and length.isdigit() else size
        if total is None:
            raise FetchError(
                f"{url} sent no Content-Length and the registry states no size, so a body cut short could not be "
                "told from a whole one; refused"
            )
        if size is not None and total != size:
            raise ChecksumError(f"{url} announces {total} bytes, the registry states {size}; not downloaded")
        label = part.name.removesuffix(".part")
        with part.open("ab" if done else "wb") as out, _progress_bar(label, done, total, progress) as advance:
            while chunk := response.read(_STREAM_CHUNK):
                done += len(chunk)
                if done > total:
                    out.close()
                    part.unlink()
                    raise ChecksumError(f"{url} sent more than the {total} bytes expected; stopped and removed")
                out.write(chunk)
                advance(len(chunk))
    if done < total:  # http.client returns a short body quietly when the peer hangs up
        raise ConnectionError(f"connection closed after {done} of {total} bytes")


@contextmanager
def _progress_bar(label: str, completed: int, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A transient bar on stderr (stdout stays clean for machine-readable output); a no-op without a size."""
    if not enabled or total is None:
        yield lambda _: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total, completed=completed)
        yield lambda size: bar.advance(task, size)


def _hf_parts(url: str) -> tuple[str, str, str | None]:
    """``hf://OWNER/REPO/path/in/repo[@revision]`` -> (repo id, path in repo, revision)."""
    rest, _, revision = url.removeprefix("hf://").partition("@")
    owner, repo, *path = rest.split("/")
    if not owner or not repo or not path or not all(path):
        raise ValueError(f"expected hf://OWNER/REPO/path/in/repo[@revision], got {url}")
    return f"{owner}/{repo}", "/".join(path), revision or None


def _hf_download(url: str, hf_cache_dir: str | Path | None) -> Path:
    from huggingface_hub import hf_hub_download  # imported here: slow to import, and only hf:// needs it

    repo_id, path_in_repo, revision = _hf_parts(url)
    try:
        return Path(hf_hub_download(repo_id, path_in_repo, revision=revision, cache_dir=hf_cache_dir))
    except OSError as err:  # hub errors (not found, offline, HTTP) are all OSErrors
        raise FetchError(f"could not download {url} from the Hugging Face Hub: {err}") from err


def _link_or_copy(source: Path, target: Path) -> None:
    """Hub blobs are never modified in place, so a hard link is a safe, free copy; fall back to copying."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _local_source(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file:// URLs must name a local path, got {url}")
    source = Path(unquote(parts.path))
    if not source.is_file():
        raise FetchError(f"could not copy {url}: {source} is not a file")
    return source
