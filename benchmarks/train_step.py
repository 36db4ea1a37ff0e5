"""One training step of each method on a backbone: time (median after warm-up) and peak-RSS growth.

Run as ``python -m benchmarks.train_step '{"method": "harma", ...}'``, one process per method, so that
each peak RSS is the method's own: the baseline is ``ru_maxrss`` after building the model, optimizer
and inputs, with the kernel's peak mark reset to the RSS of that moment; the figure is how far the
high-water mark rose above it over warm-up and timed steps (activations, gradients and, from the first
step on, AdamW's state). ``frozen`` is a forward pass under ``no_grad``.

Options: ``chunk_size`` embeds the batch that many rows at a time (``RetrievalModel.forward``).
``method: "floor"`` is what any method inside a frozen backbone costs at least: the frozen forward with
a graph, the loss, and a backward that computes the gradient of every block's input but no weight
gradient (the first block's input of each tower is made a leaf that requires a gradient).
With ``serve`` the worker builds once and then takes one step per ``step`` line on stdin (answering
``STEP seconds``) until ``done``, so that a parent can interleave the steps of several workers
(``benchmarks._proc.SteppingWorker``).
"""

from __future__ import annotations

import gc

import torch

from benchmarks._proc import (
    current_rss_mib,
    emit,
    max_rss_mib,
    median,
    reset_peak_rss,
    serve_steps,
    timed,
    worker_args,
)
from harma_zoo.engine.train import parameter_groups
from harma_zoo.insertion import block_names
from harma_zoo.model import RetrievalModel, build_model

CAPTION = "many buildings and green trees are around a playground with a red track"


def _first_block_inputs_as_leaves(model: RetrievalModel) -> None:
    """Make the input of each tower's first block a leaf that requires a gradient (the "floor" step)."""

    def as_leaf(module, args, kwargs):
        if not torch.is_grad_enabled():
            return None
        if args:
            return (args[0].detach().requires_grad_(True), *args[1:]), kwargs
        name = next(iter(kwargs))  # the hidden states, when a family passes them by keyword
        return args, {**kwargs, name: kwargs[name].detach().requires_grad_(True)}

    blocks = block_names(model.backbone, model.backbone.insertion_points())
    for tower in ("image", "text"):
        model.backbone.get_submodule(blocks[(tower, 0)]).register_forward_pre_hook(as_leaf, with_kwargs=True)


def main() -> None:
    args = worker_args()
    torch.set_flush_denormal(True)  # as the engine does: random weights give subnormals that slow CPU math
    torch.manual_seed(0)
    floor = args["method"] == "floor"
    model = build_model(args["backbone"], {"type": "frozen" if floor else args["method"]})
    if not args.get("attention_layout", True):  # the "before" of harma_zoo.backbones.attention_layout
        for handle in getattr(model.backbone, "attention_layout_hooks", []):
            handle.remove()
    batch = args["batch"]
    pixels = torch.randn(batch, 3, args["image_size"], args["image_size"])
    tokens = model.backbone.tokenize([f"{CAPTION} {i}" for i in range(batch)])
    image_ids = torch.arange(batch)
    chunk_size = args.get("chunk_size")
    n_trainable = sum(p.numel() for _, p in model.trainable_parameters())

    if args["method"] == "frozen":
        model.eval()

        def step() -> None:
            with torch.no_grad():
                model(pixels, tokens, image_ids)

    elif floor:
        model.train()
        _first_block_inputs_as_leaves(model)

        def step() -> None:
            model(pixels, tokens, image_ids, chunk_size=chunk_size)["loss"].backward()

    else:
        model.train()
        optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay=0.05), lr=1e-4)
        forward = torch.compile(model) if args.get("compile") else model

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            forward(pixels, tokens, image_ids, chunk_size=chunk_size)["loss"].backward()
            optimizer.step()

    gc.collect()
    peak_reset = reset_peak_rss()
    baseline_peak, baseline_now = max_rss_mib(), current_rss_mib()
    times = serve_steps(step) if args.get("serve") else timed(step, args["warmup"], args["steps"])
    emit(
        {
            "method": args["method"],
            "batch": batch,
            "chunk_size": chunk_size,
            "compile": bool(args.get("compile")),
            "attention_layout": args.get("attention_layout", True),
            "trainable_params": n_trainable,
            "step_s_median": median(times) if times else None,
            "step_s": times,
            "peak_rss_growth_mib": max_rss_mib() - baseline_peak,
            "baseline_peak_rss_mib": baseline_peak,
            "baseline_rss_mib": baseline_now,
            "peak_reset": peak_reset,
        }
    )


if __name__ == "__main__":
    main()
