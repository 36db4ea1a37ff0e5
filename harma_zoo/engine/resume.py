"""Resume checkpoints that survive a kill, load as data, and belong to the run that resumes them.

Three things mmengine 0.10 leaves to chance, made certain here:

- Saving. mmengine deletes the oldest checkpoint before it writes the new one under its final name;
  with one checkpoint kept, a kill in between left nothing to resume. :class:`AtomicCheckpointHook`
  writes ``epoch_N.pth.tmp``, renames it, rewrites ``last_checkpoint``, and only then deletes the old one.
- Loading. mmengine reads local checkpoints with a bare ``torch.load``, whose ``weights_only`` default an
  environment variable (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) turns off; resume checkpoints are read
  through the :data:`WEIGHTS_ONLY` scheme, which states ``weights_only=True``.
- Which file and which run. ``last_checkpoint`` holds a full path, so a copied work dir resumed from the
  original's file: :func:`resume_checkpoint` looks in the work dir given. And a run resumed with other
  data or another batch size trained on with a schedule sized for the old one (1,228 iterations at
  learning rate 0): :func:`run_signature` records what must not change, and the resume hook compares it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner import CheckpointLoader

from harma_zoo.data.annotations import Annotations
from harma_zoo.data.readers import reader_spec
from harma_zoo.fileio import atomic_write
from harma_zoo.model import resolved_method
from harma_zoo.plaindata import as_json_data

WEIGHTS_ONLY = "harma-zoo-weights-only:"
TEMPORARY_SUFFIX = ".tmp"
_EPOCH_FILE = re.compile(r"epoch_(\d+)\.pth")
# The schedule values that shape the optimisation; the others (workers, logging, validation batch) may change.
SCHEDULE_KEYS = ("epochs", "batch_size", "accumulation", "lr", "weight_decay", "betas", "eps", "warmup_ratio",
                 "decay", "amp", "seed")  # fmt: skip
DATA_KEYS = ("train_split", "val_split", "train_classes", "val_classes", "max_words")


@CheckpointLoader.register_scheme(prefixes=WEIGHTS_ONLY)
def load_weights_only(filename: str, map_location: Any = None) -> Any:
    """A resume checkpoint read with ``torch.load(weights_only=True)``: tensors and plain data, nothing else."""
    path = filename.removeprefix(WEIGHTS_ONLY)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"resume checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0]
        raise ValueError(f"resume checkpoint {path} holds more than tensors and plain data ({reason})") from None


def resume_checkpoint(work_dir: str | Path) -> str:
    """The newest complete resume checkpoint in ``work_dir`` itself, as the weights-only loader takes it.

    Only renamed (finished) ``epoch_N.pth`` files are considered; a ``.tmp`` a kill left behind is not.
    """
    work_dir = Path(work_dir)
    matches = ((_EPOCH_FILE.fullmatch(path.name), path) for path in work_dir.glob("epoch_*.pth"))
    found = [(int(match[1]), path) for match, path in matches if match]
    if not found:
        raise FileNotFoundError(
            f"nothing to resume in {work_dir}: it holds no resume checkpoint (epoch_N.pth); train without --resume"
        )
    return WEIGHTS_ONLY + str(max(found)[1])


def _content_sha256(annotations: Annotations) -> str:
    summary = [annotations.names, annotations.captions, annotations.caption_image]
    return hashlib.sha256(json.dumps(summary).encode()).hexdigest()


def run_signature(cfg: Config, train: Annotations, val: Annotations, world_size: int) -> dict[str, Any]:
    """What a resumed run must share with the run that saved the checkpoint for the two to be one run.

    The data are compared by content (image names, captions), not by path: a dataset moved to another
    disk is the same data.
    """
    layout, options = reader_spec(cfg.data.reader)
    data = {key: cfg.data.get(key) for key in DATA_KEYS}
    for name, split in (("train", train), ("val", val)):
        data[f"{name}_images"], data[f"{name}_captions"] = split.num_images, split.num_captions
        data[f"{name}_content_sha256"] = _content_sha256(split)
    return as_json_data(
        {
            "method": resolved_method(cfg.method),  # an option written out at its default is no change
            "loss": cfg.loss,
            "data": {"reader": {"type": layout, **options}, **data},
            "schedule": {key: cfg.schedule.get(key) for key in SCHEDULE_KEYS},
            "world_size": world_size,
        }
    )


def signature_changes(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: before -> now`` for every leaf that differs between two signatures."""
    changes = []
    for key in sorted(set(saved) | set(now)):
        before, after = saved.get(key), now.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += signature_changes(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return changes


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook``, saving so that a kill at any moment leaves a checkpoint to resume from."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():  # what a kill left half-written
            for leftover in Path(self.out_dir).glob(self.filename_tmpl.format("*") + TEMPORARY_SUFFIX):
                leftover.unlink(missing_ok=True)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename + TEMPORARY_SUFFIX,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():  # only the main process writes checkpoints
            return
        folder = Path(self.out_dir)
        os.replace(folder / (filename + TEMPORARY_SUFFIX), folder / filename)
        atomic_write(Path(runner.work_dir) / "last_checkpoint", lambda temporary: temporary.write_text(self.last_ckpt))
        for old in stale:  # only now that the new checkpoint is complete and named
            (folder / self.filename_tmpl.format(old)).unlink(missing_ok=True)
