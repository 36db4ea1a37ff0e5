"""What the benchmark workers share: peak-RSS readings and the worker protocol (JSON on the last stdout line)."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "


def max_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0: ``5`` into clear_refs).

    Without it, temporaries freed while building inputs would leave a high-water mark that hides a
    smaller peak of the code under measurement. Returns whether the reset took effect.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss_mib() -> float:
    """This process's resident set size now, in MiB (from /proc; NaN where it cannot be read)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def timed(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(result: dict[str, Any]) -> None:
    """Hand ``result`` back to the parent process."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def worker_args() -> dict[str, Any]:
    """The JSON arguments of a worker; applies ``threads`` (torch intra-op threads) when given."""
    args = json.loads(sys.argv[1])
    if args.get("threads"):
        import torch

        torch.set_num_threads(args["threads"])
    return args


def run_worker(module: str, args: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python -m module ARGS_JSON`` in a fresh process; its result, or ``{"error": ...}``."""
    command = [sys.executable, "-m", module, json.dumps(args)]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
