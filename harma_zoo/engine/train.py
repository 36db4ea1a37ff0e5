"""Training on mmengine's Runner, built from a recipe."""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.dist import get_dist_info, init_dist, is_distributed
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner import Runner

from harma_zoo.data.datasets import CaptionPairs, collate_pairs
from harma_zoo.engine.console import quiet_console
from harma_zoo.engine.hooks import RetrievalValidationHook
from harma_zoo.engine.recipe import build_recipe_model, load_split, save_info
from harma_zoo.engine.resume import resume_checkpoint, run_signature
from harma_zoo.engine.runner_model import RunnerModel
from harma_zoo.engine.seeding import SeededSamples
from harma_zoo.model import RetrievalModel


def parameter_groups(model: RetrievalModel, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups of the reference schedule: weight decay on every trained parameter except biases."""
    decay, no_decay = [], []
    for name, parameter in model.trainable_parameters():
        (no_decay if name.endswith("bias") else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_schedule(total_iters: int, warmup_ratio: float, decay: str) -> list[dict[str, Any]]:
    """Linear warm-up, then linear or cosine decay to 0 at the last iteration, stepped every iteration.

    The warm-up lasts W = round(warmup_ratio * total_iters) iterations (at least one when the ratio is
    positive, and fewer than the run): the rate starts at 1e-3 x the base rate and is the base rate at
    iteration W, for any run length. mmengine's LinearLR reaches its end factor at iteration ``end - 1``,
    hence ``end = W + 1``; at iteration W the decay's first step multiplies by 1.
    """
    warmup = 0
    if warmup_ratio > 0 and total_iters > 1:
        warmup = min(max(1, round(warmup_ratio * total_iters)), total_iters - 1)
    schedule = []
    if warmup:
        schedule.append(
            dict(type="LinearLR", start_factor=1e-3, end_factor=1.0, by_epoch=False, begin=0, end=warmup + 1)
        )
    if decay == "linear":
        schedule.append(
            dict(type="LinearLR", start_factor=1.0, end_factor=0.0, by_epoch=False, begin=warmup, end=total_iters)
        )
    elif decay == "cosine":
        schedule.append(
            dict(
                type="CosineAnnealingLR",
                T_max=max(1, total_iters - warmup - 1),  # 0 at the last iteration, as the linear decay
                eta_min=0.0,
                by_epoch=False,
                begin=warmup,
                end=total_iters,
            )
        )
    else:
        raise ValueError(f"schedule.decay must be 'linear' or 'cosine', got {decay!r}")
    return schedule


class QuietRunner(Runner):
    """mmengine's Runner, its console logger quieted (``console.quiet_console``) before it logs anything."""

    def build_logger(self, log_level: int | str = "INFO", log_file: str | None = None, **kwargs) -> MMLogger:
        return quiet_console(super().build_logger(log_level, log_file, **kwargs))


def build_runner(
    cfg: Config, work_dir: str | Path, launcher: str = "none", resume: bool = False, resume_anyway: bool = False
) -> Runner:
    """A Runner that trains ``cfg``'s method on its backbone and validates every epoch.

    ``resume`` continues from the newest resume checkpoint in ``work_dir``, loaded weights-only, and refuses
    one saved by a run with other data or schedule unless ``resume_anyway``.
    """
    use_cuda = torch.cuda.is_available()
    if launcher != "none" and not is_distributed():  # before sizing the schedule by world size
        if use_cuda:
            init_dist(launcher, backend="nccl")
        else:  # mmengine's pytorch launcher always selects a CUDA device; on CPU, gloo from torchrun's env
            torch.distributed.init_process_group(backend="gloo")
    schedule = cfg.schedule
    model = build_recipe_model(cfg)
    if not any(True for _ in model.trainable_parameters()):
        raise ValueError(f"method {cfg.method['type']!r} trains nothing; evaluate it with `harma-zoo eval` instead")
    train_split = load_split(cfg, "train")
    val_split = load_split(cfg, "val")
    dataset = SeededSamples(
        CaptionPairs(train_split, model.backbone.train_transform(), cfg.data.max_words), schedule.seed
    )

    _, world = get_dist_info()
    iters_per_epoch = math.ceil(len(dataset) / world) // schedule.batch_size  # as DefaultSampler + drop_last
    if iters_per_epoch == 0:
        raise ValueError(
            f"{len(dataset)} training captions cannot fill one batch of {schedule.batch_size} x {world} processes"
        )
    total_iters = iters_per_epoch * schedule.epochs
    optimizer = torch.optim.AdamW(
        parameter_groups(model, schedule.weight_decay), lr=schedule.lr, betas=tuple(schedule.betas), eps=schedule.eps
    )
    wrapper_class = AmpOptimWrapper if (schedule.amp and use_cuda) else OptimWrapper
    optim_wrapper = wrapper_class(optimizer=optimizer, accumulative_counts=schedule.accumulation)
    validation = RetrievalValidationHook(
        val_split,
        save_info(cfg, train_split, val_split),
        interval=schedule.val_interval,
        batch_size=schedule.val_batch_size,
        num_workers=schedule.num_workers,
    )
    if not use_cuda:  # DDP on CPU takes no device ids; mmengine would pass the local rank
        cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None)
    return QuietRunner(
        model=RunnerModel(model, schedule.get("chunk_size")),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dataset,
            sampler=dict(type="DefaultSampler", shuffle=True),
            batch_size=schedule.batch_size,
            num_workers=schedule.num_workers,
            collate_fn=collate_pairs,
            drop_last=True,
        ),
        train_cfg=dict(by_epoch=True, max_epochs=schedule.epochs),
        optim_wrapper=optim_wrapper,
        param_scheduler=lr_schedule(total_iters, schedule.warmup_ratio, schedule.decay),
        default_hooks=dict(
            checkpoint=dict(type="AtomicCheckpointHook", interval=1, max_keep_ckpts=1, save_last=True),
            logger=dict(type="LoggerHook", interval=schedule.log_interval),
        ),
        custom_hooks=[
            dict(
                type="ResumeCheckpointHook",
                run=run_signature(cfg, train_split, val_split, world),
                resume_anyway=resume_anyway,
            ),
            dict(type="SampleEpochHook"),
            dict(type="RichProgressHook"),
            validation,
        ],
        launcher=launcher,
        env_cfg=dict(dist_cfg=dict(backend="nccl" if use_cuda else "gloo")),
        randomness=dict(seed=schedule.seed),
        # unique per run: mmengine keys its logger and visualizer by this name, and two runs started
        # in one process within the same second would otherwise share them (and one log folder)
        experiment_name=f"{cfg.name}_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}",
        resume=resume,
        load_from=resume_checkpoint(work_dir) if resume else None,
        cfg=cfg,
    )


def train(
    cfg: Config, work_dir: str | Path, launcher: str = "none", resume: bool = False, resume_anyway: bool = False
) -> dict[str, Any]:
    """Train, validating every epoch; returns the best validation result (mR and its epoch)."""
    runner = build_runner(cfg, work_dir, launcher, resume, resume_anyway)
    runner.train()
    validation = next(h for h in runner.hooks if isinstance(h, RetrievalValidationHook))
    return validation.best
