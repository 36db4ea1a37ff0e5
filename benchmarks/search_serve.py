"""``harma-zoo serve`` under a bounded load on 127.0.0.1: requests/s, latency, errors, memory.

Run as ``python -m benchmarks.search_serve '{"index": PATH, "clients": 32, "seconds": 20}'``. A real
``harma-zoo serve`` process; ``clients`` threads, each sending one request at a time for ``seconds``
(nothing else is contacted, and the loop stops by itself), in turn: a sentence, "more like" an item,
and an image upload (an item's thumbnail). Memory: the server's RSS after a warm-up, sampled every
second under load; "flat" means the last sample is within a few MiB of the first.
"""

from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks._proc import emit, worker_args

SENTENCES = (
    "many planes parked next to a long terminal",
    "a large playground with a red running track",
    "many white storage tanks",
    "a bridge over a river",
    "green farmland divided into rectangles",
    "a beach with white waves",
    "dense residential buildings along a road",
    "a port with many boats",
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request(url: str, data: bytes | None = None) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as response:
        return response.read()


def main() -> None:
    args: dict[str, Any] = worker_args()
    command = [sys.executable, "-m", "harma_zoo.cli", "serve", args["index"], "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = re.search(r"at (http://127\.0\.0\.1:\d+)/", server.stdout.readline()).group(1)
        items = int(json.loads(request(f"{base}/api/info"))["items"])
        upload = request(f"{base}/api/thumb/0")
        for sentence in SENTENCES:  # warm-up: model, caches, thread pool
            request(f"{base}/api/search?" + urllib.parse.urlencode({"q": sentence, "k": 20}))
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + args["seconds"]

        def client(number: int) -> None:
            turn = number
            while time.monotonic() < deadline:
                kind = turn % 3
                if kind == 0:
                    url, data = (
                        f"{base}/api/search?" + urllib.parse.urlencode({"q": SENTENCES[turn % 8], "k": 20}),
                        None,
                    )
                elif kind == 1:
                    url, data = f"{base}/api/search?id={(turn * 7919) % items}&k=20", None
                else:
                    url, data = f"{base}/api/search?k=20", upload
                started = time.perf_counter()
                try:
                    request(url, data)
                    with lock:
                        latencies.append(time.perf_counter() - started)
                except (urllib.error.URLError, OSError) as error:
                    with lock:
                        errors.append(str(error))
                turn += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args["clients"])]
        memory = [rss_mib(server.pid)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            time.sleep(1.0)
            memory.append(rss_mib(server.pid))
        wall = time.monotonic() - started
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    emit({
        "clients": args["clients"],
        "seconds": wall,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p95_ms": 1000 * cuts[94],
        "errors": len(errors),
        "first_errors": errors[:3],
        "rss_start_mib": memory[0],
        "rss_end_mib": memory[-1],
        "rss_max_mib": max(memory),
    })  # fmt: skip


if __name__ == "__main__":
    main()
