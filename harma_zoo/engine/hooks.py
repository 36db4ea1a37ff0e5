"""mmengine hooks that make a Runner train adapters the harma-zoo way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from harma_zoo.data.annotations import Annotations
from harma_zoo.engine.checkpoint import save_adapter
from harma_zoo.engine.evaluation import evaluate
from harma_zoo.engine.resume import signature_changes

HISTORY_MARK = "__mmengine_history_buffer__"


def runner_model(runner):
    """The Runner's model without its DDP wrapper."""
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def retrieval_model(runner):
    return runner_model(runner).retrieval


def _message_hub_data(value: Any) -> Any:
    """NumPy values and mmengine history buffers as plain Python data, recursively."""
    if isinstance(value, HistoryBuffer):
        log, count = value.data
        return {
            HISTORY_MARK: {"log_history": log.tolist(), "count_history": count.tolist(), "max_length": value.max_length}
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return type(value)((key, _message_hub_data(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_message_hub_data(item) for item in value)
    return value


def _rebuilt(value: Any) -> Any:
    """The inverse of ``_message_hub_data`` for history buffers (numbers stay Python numbers)."""
    if isinstance(value, dict):
        if set(value) == {HISTORY_MARK}:
            return HistoryBuffer(**value[HISTORY_MARK])
        return type(value)((key, _rebuilt(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_rebuilt(item) for item in value]
    return value


@HOOKS.register_module()
class ResumeCheckpointHook(Hook):
    """Makes mmengine's resume checkpoints small and loadable with ``torch.load(weights_only=True)``.

    mmengine 0.10 stores its message hub (``HistoryBuffer`` objects of NumPy arrays)
    and loads checkpoints with a plain ``torch.load``; under torch >= 2.6 that is
    ``weights_only=True``, which refuses those objects (their NumPy dtypes pickle
    through ``getattr``, which no allow-list should admit). So saving turns them into
    plain lists and numbers and loading turns them back: nothing is ever unpickled
    but tensors and plain data. Saving also drops frozen weights (a ViT-B/32 run saves
    megabytes, not 600 MB) and records the backbone fingerprint; loading refuses
    another backbone and fills the frozen weights back in from the model.
    """

    priority = "VERY_HIGH"

    def __init__(self, run: dict[str, Any] | None = None, resume_anyway: bool = False) -> None:
        """``run``: what the run must keep to be resumed (``resume.run_signature``); a checkpoint whose
        run differs is refused, naming what changed, unless ``resume_anyway``."""
        self.run = run
        self.resume_anyway = resume_anyway

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner_model(runner)
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}
        checkpoint["meta"]["backbone_fingerprint"] = retrieval_model(runner).backbone_fingerprint
        if self.run is not None:
            checkpoint["meta"]["harma_run"] = self.run
        checkpoint["meta"] = _message_hub_data(checkpoint["meta"])
        checkpoint["message_hub"] = _message_hub_data(checkpoint["message_hub"])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # mmengine's resume runs ``meta.config`` as a Python config file (to count GPUs): a checkpoint is data.
        checkpoint.get("meta", {}).pop("config", None)
        expected = retrieval_model(runner).backbone_fingerprint
        found = checkpoint.get("meta", {}).get("backbone_fingerprint")
        if found != expected:
            raise ValueError(f"resume checkpoint was made on backbone {found}, this run's backbone is {expected}")
        saved = checkpoint["meta"].get("harma_run")
        changes = signature_changes(saved, self.run) if saved is not None and self.run is not None else []
        if changes and not self.resume_anyway:
            raise ValueError(
                "the resume checkpoint belongs to a run with other settings: " + "; ".join(changes) + ". Resuming "
                "would continue its schedule on this run's data and batches; start afresh, or resume anyway "
                "(harma-zoo train --resume-anyway)"
            )
        if changes:
            runner.logger.warning("resuming anyway, although " + "; ".join(changes))
        checkpoint["message_hub"] = _rebuilt(checkpoint["message_hub"])
        model = runner_model(runner)
        for name, value in model.state_dict().items():
            checkpoint["state_dict"].setdefault(name, value)


@HOOKS.register_module()
class SampleEpochHook(Hook):
    """Tells per-sample seeded datasets which epoch is starting (see ``seeding``)."""

    def before_train_epoch(self, runner) -> None:
        dataset = runner.train_dataloader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(runner.epoch)


@HOOKS.register_module()
class RetrievalValidationHook(Hook):
    """Validates every ``interval`` epochs and keeps ``last`` and ``best`` adapter checkpoints.

    The best checkpoint is chosen by validation mR, never by test figures. Its
    state (best mR and epoch) travels in the resume checkpoint.
    """

    priority = "LOW"  # before mmengine's CheckpointHook, so the saved state includes this epoch's result

    def __init__(
        self,
        annotations: Annotations,
        save_info: dict[str, Any],
        interval: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        self.annotations = annotations
        self.save_info = save_info
        self.interval = interval
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.best: dict[str, Any] = {"mR": float("-inf"), "epoch": 0}

    def after_train_epoch(self, runner) -> None:
        epoch = runner.epoch + 1
        if epoch % self.interval and epoch != runner.max_epochs:
            return
        model = retrieval_model(runner)
        metrics = evaluate(model, self.annotations, self.batch_size, self.num_workers)
        runner.message_hub.update_scalars({f"val/{key}": value for key, value in metrics.items()})
        runner.logger.info(f"epoch {epoch} validation: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
        improved = metrics["mR"] > self.best["mR"]
        if improved:
            self.best = {"mR": metrics["mR"], "epoch": epoch, "metrics": metrics}
        if is_main_process():
            work_dir = Path(runner.work_dir)
            # the options as built: what the method sized from the backbone (HarMA's unset bottleneck) is recorded
            extra = {"epoch": epoch, "selected_on": "val", "method_options": model.method.options_dict()}
            save_adapter(model, work_dir / "last.safetensors", metrics={"val": metrics}, extra=extra, **self.save_info)
            if improved:
                save_adapter(
                    model, work_dir / "best.safetensors", metrics={"val": metrics}, extra=extra, **self.save_info
                )

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["meta"]["harma_best"] = self.best

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.best = checkpoint["meta"].get("harma_best", self.best)


@HOOKS.register_module()
class RichProgressHook(Hook):
    """A rich progress bar per training epoch, on the main process only."""

    priority = "BELOW_NORMAL"

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task = None

    def before_train_epoch(self, runner) -> None:
        if not is_main_process():
            return
        self.progress = Progress(
            TextColumn(f"epoch {runner.epoch + 1}/{runner.max_epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeRemainingColumn(),
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=len(runner.train_dataloader), loss="")

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.progress is not None:
            loss = f"loss {float(outputs['loss'].detach()):.4f}" if outputs and "loss" in outputs else ""
            self.progress.update(self.task, advance=1, loss=loss)

    def after_train_epoch(self, runner) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
