"""Launching bench runs: each training on several processes (torchrun), several runs side by side.

``nproc_per_run`` N > 1: a run's training is ``torch.distributed.run --standalone --nproc_per_node N``
over ``harma-zoo train RECIPE --launcher pytorch`` (mmengine's pytorch launcher; gloo on CPU). The
recipe's ``schedule.batch_size`` is split over the N processes, so the global batch, and with it what
the run computes and its result, are those of one process (a batch that N does not divide is an
error); the losses gather the embeddings of all processes. Evaluation stays in the bench's process.

``parallel_runs`` K > 1: K runs at once, each in a process of its own (``python -m
harma_zoo.bench.launch``, which does for one run exactly what a sequential bench does: ``run_one``
with its skip of finished runs and resume of interrupted ones), with its own devices through
``CUDA_VISIBLE_DEVICES``: K disjoint groups of N GPUs (on CPU the runs share the cores). A run's
output goes to ``runs/<run id>/bench.log``. Runs that are already finished are not launched at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from rich.console import Console

from harma_zoo.bench.compose import BenchRun
from harma_zoo.engine.checkpoint import read_metadata

TrainFn = Callable[..., dict[str, Any]]
LOG_NAME = "bench.log"


def per_process_batch(batch_size: int, nproc: int, run_id: str = "") -> int:
    """The batch of each of ``nproc`` processes that together make the global ``batch_size``."""
    if batch_size % nproc:
        raise ValueError(
            f"{run_id + ': ' if run_id else ''}schedule.batch_size={batch_size} cannot be split over {nproc} "
            "processes per run; "
            f"choose a batch size that {nproc} divides (the global batch is kept on any number of processes)"
        )
    return batch_size // nproc


def torchrun_command(recipe_file: Path, work_dir: Path, nproc: int, batch_size: int, resume: bool) -> list[str]:
    """``harma-zoo train`` on ``nproc`` processes under torchrun, each with its share of the batch."""
    return [
        sys.executable,
        *("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"),
        *("-m", "harma_zoo.cli", "train", str(recipe_file), "--work-dir", str(work_dir), "--launcher", "pytorch"),
        *("--cfg-options", f"schedule.batch_size={per_process_batch(batch_size, nproc)}"),
        *(["--resume"] if resume else []),
    ]


def torchrun_train(nproc: int) -> TrainFn:
    """A ``train_fn`` for ``run_one`` that trains the run's saved recipe on ``nproc`` processes.

    Returns the best validation result, read from the run's best checkpoint as ``train`` returns it.
    """

    def train_on_processes(cfg: Config, work_dir: str | Path, resume: bool = False) -> dict[str, Any]:
        work_dir = Path(work_dir)
        command = torchrun_command(Path(cfg.filename), work_dir, nproc, cfg.schedule.batch_size, resume)
        done = subprocess.run(command)
        if done.returncode:
            raise RuntimeError(f"training on {nproc} processes failed (exit {done.returncode}): {' '.join(command)}")
        metadata = read_metadata(work_dir / "best.safetensors")
        metrics = metadata["metrics"]["val"]
        return {"mR": metrics["mR"], "epoch": metadata["extra"]["epoch"], "metrics": metrics}

    return train_on_processes


def device_groups(parallel_runs: int, nproc: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` of each of the runs side by side; None on a machine without GPUs."""
    if not torch.cuda.is_available():
        return [None] * parallel_runs
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    devices = devices or [str(index) for index in range(torch.cuda.device_count())]
    needed = parallel_runs * nproc
    if len(devices) < needed:
        raise ValueError(
            f"{parallel_runs} runs side by side x {nproc} processes per run need {needed} GPUs; "
            f"{len(devices)} are visible ({','.join(devices)})"
        )
    return [",".join(devices[index * nproc : (index + 1) * nproc]) for index in range(parallel_runs)]


def check_processes(nproc: int) -> None:
    """On a GPU machine every process of a run needs a GPU of its own."""
    if nproc < 1:
        raise ValueError(f"processes per run must be at least 1, got {nproc}")
    device_groups(1, nproc)


def _child_spec(run: BenchRun, runs_dir: Path, nproc: int) -> dict[str, Any]:
    labels = {field.name: getattr(run, field.name) for field in dataclasses.fields(run) if field.name != "cfg"}
    return {"run": labels, "cfg": run.cfg.pretty_text, "runs_dir": str(runs_dir), "nproc": nproc}


def run_in_child(run: BenchRun, runs_dir: Path, nproc: int, devices: str | None) -> str | None:
    """Do one run in a process of its own on ``devices``; None when it finished, else what went wrong."""
    work_dir = runs_dir / run.run_id
    work_dir.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    if devices is not None:
        environment["CUDA_VISIBLE_DEVICES"] = devices
    log = work_dir / LOG_NAME
    with log.open("w") as output:
        done = subprocess.run(
            [sys.executable, "-m", "harma_zoo.bench.launch"],
            input=json.dumps(_child_spec(run, runs_dir, nproc)),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            text=True,
        )
    if done.returncode == 0:
        return None
    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    return f"exit {done.returncode} (log: {log}): {tail}"


def run_side_by_side(
    runs: list[BenchRun], runs_dir: Path, console: Console, nproc: int, parallel_runs: int
) -> dict[str, str | None]:
    """Each run in its own process, ``parallel_runs`` at a time on disjoint devices; run id -> error or None."""
    slots: queue.Queue[str | None] = queue.Queue()
    for group in device_groups(parallel_runs, nproc):
        slots.put(group)

    def launch(run: BenchRun) -> str | None:
        devices = slots.get()
        where = f"GPUs {devices}" if devices is not None else "CPU"
        log = runs_dir / run.run_id / LOG_NAME
        console.print(f"{run.run_id}: started on {where}, log {log}", highlight=False, markup=False)
        try:
            error = run_in_child(run, runs_dir, nproc, devices)
        finally:
            slots.put(devices)
        console.print(f"{run.run_id}: {'finished' if error is None else 'failed'}", highlight=False, markup=False)
        return error

    with ThreadPoolExecutor(max_workers=parallel_runs) as pool:  # threads only wait for the processes
        return dict(zip((run.run_id for run in runs), pool.map(launch, runs), strict=True))


def main() -> int:
    """One run, described as JSON on stdin by ``run_in_child``."""
    from harma_zoo.bench.runs import run_one

    spec = json.loads(sys.stdin.read())
    run = BenchRun(cfg=Config.fromstring(spec["cfg"], ".py"), **spec["run"])
    train_fn = torchrun_train(spec["nproc"]) if spec["nproc"] > 1 else None
    run_one(run, Path(spec["runs_dir"]), Console(), train_fn)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
