"""What the benchmark workers share: peak-RSS readings and the worker protocol (JSON on the last stdout line)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "
READY, STEP, DONE = "BENCH-READY", "BENCH-STEP", "done"


def max_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_free_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``), where there is glibc.

    Memory freed while building a model (initialisation temporaries of many mid-size tensors) stays
    resident in the heap; a step's activations then reuse it and the RSS does not grow: a small
    batch's peak would read as almost nothing. After the trim, RSS is what is live.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0: ``5`` into clear_refs).

    Without it, temporaries freed while building inputs would leave a high-water mark that hides a
    smaller peak of the code under measurement. The free heap is released first (see
    ``release_free_heap``). Returns whether the reset took effect.
    """
    release_free_heap()
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


def serve_steps(step: Callable[[], object]) -> list[float]:
    """The worker side of ``SteppingWorker``: one timed ``step`` per ``step`` line on stdin, until ``done``."""
    print(READY, flush=True)
    times = []
    for line in sys.stdin:
        if line.strip() == DONE:
            break
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        print(f"{STEP} {times[-1]}", flush=True)
    return times


class SteppingWorker:
    """A worker process that builds once, then takes one step each time it is asked.

    Several of them, asked in turn, interleave their steps, so that a slow patch of a shared machine
    falls on all of them alike; each keeps its own peak RSS. ``finish`` returns the worker's result.
    Use it as a context manager: leaving it ends the process if it still runs.
    """

    def __init__(self, module: str, args: dict[str, Any]) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by __exit__)
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps({**args, "serve": True})],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.error: str | None = None
        self._read(READY)

    def _read(self, prefix: str) -> str | None:
        """The next stdout line starting with ``prefix`` (other output is skipped); None once it failed."""
        if self.error:
            return None
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        self.process.wait()
        self.stderr.seek(0)
        tail = " | ".join(self.stderr.read().strip().splitlines()[-5:])
        self.error = f"exit {self.process.returncode}: {tail}"
        return None

    def step(self) -> float | None:
        """Seconds of one step, or None when the worker failed (see ``error``)."""
        if self.error:
            return None
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        answer = self._read(STEP)
        return None if answer is None else float(answer)

    def finish(self) -> dict[str, Any]:
        if not self.error:
            self.process.stdin.write(DONE + "\n")
            self.process.stdin.flush()
            answer = self._read(RESULT_PREFIX)
            if answer is not None:
                self.process.wait()
                return json.loads(answer)
        return {"error": self.error}

    def __enter__(self) -> SteppingWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


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
