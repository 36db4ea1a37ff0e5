"""``harma-zoo serve``: the JSON API over real HTTP on 127.0.0.1, and the page in a real headless Chromium."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from search_helpers import TRANSFER, write_archive

from harma_zoo.search import index_archive, write_synthetic_scene

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900")  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("zoo-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARMA_ZOO_HOME", str(home))
        patch.delenv("HARMA_ZOO_REGISTRY", raising=False)
        yield home


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Path:
    folder = tmp_path_factory.mktemp("served")
    write_archive(folder / "archive", 12)
    write_synthetic_scene(folder / "archive" / "scene.tif", tiles=2, tile_size=64, seed=2)
    index_archive(folder / "archive", TRANSFER, folder / "index", chip=64, workers=0, progress=False)
    return folder / "index"


def _serve(index: Path, home: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HARMA_ZOO_HOME": str(home), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "harma_zoo.cli", "serve", str(index), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def server(index: Path, home: Path) -> Iterator[str]:
    """The page of a real ``harma-zoo serve`` on a free port of 127.0.0.1: its base URL."""
    process = _serve(index, home, "--port", "0")
    line = process.stdout.readline()
    match = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
    assert match, line + process.stdout.read() if process.poll() is not None else line
    yield match.group(1)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    finally:
        process.kill()


def _get(url: str, data: bytes | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def test_the_api_answers_text_id_and_image_queries_and_geojson(server: str, index: Path) -> None:
    status, kind, body = _get(f"{server}/api/search?q=many+planes+parked&k=5")
    assert status == 200 and kind == "application/json"
    hits = json.loads(body)["hits"]
    assert [hit["rank"] for hit in hits] == [1, 2, 3, 4, 5]
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)

    chip = next(hit for hit in json.loads(_get(f"{server}/api/search?q=a+lake&k=16")[2])["hits"] if hit["window"])
    status, _, body = _get(f"{server}/api/search?id={chip['id']}&k=3")
    assert status == 200 and json.loads(body)["hits"][0]["id"] == chip["id"]
    status, kind, thumbnail = _get(f"{server}{chip['thumb']}")
    assert status == 200 and kind == "image/jpeg" and Image.open(io.BytesIO(thumbnail)).size == (64, 64)

    status, _, body = _get(f"{server}/api/search?k=2", data=thumbnail)  # the chip's thumbnail as a query image
    assert status == 200 and json.loads(body)["hits"][0]["id"] == chip["id"]

    status, kind, body = _get(f"{server}/api/geojson?id={chip['id']}&k=3")
    collection = json.loads(body)
    assert status == 200 and kind == "application/geo+json"
    assert collection["features"][0]["geometry"]["type"] == "Polygon"
    assert collection["features"][0]["properties"]["rank"] == 1

    for query, message in (("q=", "give a sentence"), ("q=x&k=0", "k must be between 1"), ("id=999", "no item")):
        status, _, body = _get(f"{server}/api/search?{query}")
        assert status == 400 and message in json.loads(body)["error"], query
    status, _, body = _get(f"{server}/api/search", data=b"not an image")
    assert status == 400 and "cannot decode" in json.loads(body)["error"]
    status, kind, page = _get(f"{server}/")
    assert status == 200 and kind.startswith("text/html") and b"/static/app.js" in page
    assert b"http" not in page.replace(b"http-equiv", b"")  # every asset from the package, nothing from elsewhere


def test_a_port_in_use_is_one_clear_line(server: str, index: Path, home: Path) -> None:
    port = server.rsplit(":", 1)[1]
    process = _serve(index, home, "--port", port)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2
    assert output.strip() == f"error: port {port} on 127.0.0.1 is in use; choose another with --port"


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")  # fmt: skip
def test_the_page_in_headless_chromium_shows_ranked_thumbnails(server: str, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    os.environ["SE_OFFLINE"] = "true"  # selenium never fetches a driver or a browser
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        wait = WebDriverWait(driver, 120)
        driver.get(f"{server}/")
        box = driver.find_element(By.ID, "query")
        k = driver.find_element(By.ID, "k")
        k.clear()
        k.send_keys("6")
        box.send_keys("many planes parked next to a long terminal", Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "figure.hit")) == 6)
        cards = driver.find_elements(By.CSS_SELECTOR, "figure.hit")
        ranks = [int(card.get_attribute("data-rank")) for card in cards]
        scores = [float(card.get_attribute("data-score")) for card in cards]
        assert ranks == sorted(ranks) and ranks[0] == 1 and scores == sorted(scores, reverse=True)
        assert cards[0].find_element(By.CSS_SELECTOR, ".rank").text == "#1"
        loaded = "return [...document.querySelectorAll('figure.hit img')].every(i => i.complete && i.naturalWidth > 0)"
        wait.until(lambda d: d.execute_script(loaded))  # read in one script: the grid may be re-rendered meanwhile
        assert "6 results" in driver.find_element(By.ID, "status").text

        clicked = cards[3].get_attribute("data-id")
        cards[3].click()  # search by that image
        first_id = "const f = document.querySelector('figure.hit'); return f && f.dataset.id"
        wait.until(lambda d: d.execute_script(first_id) == clicked)
        first = driver.find_elements(By.CSS_SELECTOR, "figure.hit")[0]
        assert float(first.get_attribute("data-score")) == pytest.approx(1.0, abs=1e-5)
        link = driver.find_element(By.ID, "geojson")
        assert link.is_displayed() and link.get_attribute("href").endswith(f"/api/geojson?id={clicked}&k=6")
        collection = json.loads(_get(link.get_attribute("href"))[2])
        assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 6
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)
