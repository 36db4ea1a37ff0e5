"""The GPU check of issue 13, ready to run on a CUDA machine (one GPU, under 8 minutes):

    python benchmarks/gpu_check.py --out results/gpu_check.json

OpenCLIP ViT-B-32 with random weights (nothing is downloaded), on ``cuda:0``:

1. ``amp``: one HarMA training step through ``RunnerModel.train_step`` (the Runner's own path) in fp32,
   then with mmengine's ``AmpOptimWrapper`` in bfloat16 and float16, from the same weights and batch:
   the losses agree with fp32 (bf16 within 2%, fp16 within 1%) and are finite, and so are the weights
   after the step; the bf16 step in chunks agrees with the unchunked bf16 step.
2. ``chunked``: peak CUDA memory growth of a HarMA step at batch 428 in chunks of 32 against an unchunked
   batch-32 step (goal at most 1.3x) and against batch 428 unchunked; time per sample; the chunked loss
   and gradients against the unchunked batch-428 ones (IEEE fp32); LoRA dropout on CUDA replayed in the
   second pass (the CUDA random state is saved and restored per chunk).
3. ``evaluation``: embeddings of a synthetic split on CUDA against CPU; ``retrieval_metrics`` on CUDA
   equal to CPU for the same embeddings; NWPU-Captions size (31,500 x 157,500, D=512) on CUDA: time
   against the similarity products alone (goal at most 1.5x) and peak memory.
4. ``compile``: a ``torch.compile``'d HarMA step against eager (loss and gradients, step times);
   ``compile_chunked``: the same with ``chunk_size``.

Every check either passes or fails with the reason; the exit status is 0 only when all passed, and the
JSON holds each check's figures. Without a CUDA device the check refuses to run (exit 2) and says so;
``--smoke`` runs the same code on CPU with the tiny backbone and small sizes, to check the script itself
(its figures mean nothing, and the AMP check needs CUDA).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/gpu_check.py` from anywhere

from benchmarks.evaluation import similarity_products, synthetic  # noqa: E402
from harma_zoo.data.readers import read_harma_json  # noqa: E402
from harma_zoo.data.synthetic import write_synthetic_dataset  # noqa: E402
from harma_zoo.engine.evaluation import embed_split  # noqa: E402
from harma_zoo.engine.metric import retrieval_metrics  # noqa: E402
from harma_zoo.engine.runner_model import RunnerModel  # noqa: E402
from harma_zoo.engine.train import parameter_groups  # noqa: E402
from harma_zoo.fileio import atomic_write  # noqa: E402
from harma_zoo.model import RetrievalModel, build_model  # noqa: E402

CAPTION = "a wide river crosses green farmland next to a small town with red roofs"


class CheckFailed(AssertionError):
    """A check's figures are not what they must be."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


class Setup:
    """Sizes and devices of a full run on a GPU, or of a ``--smoke`` run on CPU."""

    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.device = torch.device("cpu" if smoke else "cuda")
        self.backbone = {"type": "open_clip", "arch": "harma-tiny-vit" if smoke else "ViT-B-32"}
        self.image_size = 64 if smoke else 224
        self.batch = 12 if smoke else 64
        self.chunk = 4 if smoke else 32
        self.paper_batch = 24 if smoke else 428
        self.eval_images = (300, 32) if smoke else (31_500, 512)  # (images, D) of the large evaluation
        self.val_images = 12 if smoke else 100

    def model(self, method: dict[str, Any]) -> RetrievalModel:
        torch.manual_seed(0)
        return build_model(self.backbone, method).to(self.device).train()

    def batch_of(self, model: RetrievalModel, rows: int):
        generator = torch.Generator().manual_seed(rows)
        pixels = torch.randn(rows, 3, self.image_size, self.image_size, generator=generator).to(self.device)
        captions = [f"{CAPTION} {index}" for index in range(rows)]
        tokens = {k: v.to(self.device) for k, v in model.backbone.tokenize(captions).items()}
        image_ids = (torch.arange(rows) // 2).to(self.device)  # two captions per image
        return pixels, captions, tokens, image_ids

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> int:
        """Start a peak-memory window; returns the bytes allocated now (0 on CPU, where it is not tracked)."""
        if self.device.type != "cuda":
            return 0
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()

    def peak_growth_mib(self, baseline: int) -> float | None:
        if self.device.type != "cuda":
            return None
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - baseline) / 2**20


def ieee_float32() -> None:
    """Exact float32 products and convolutions (no TF32): comparisons must agree to float32 rounding."""
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"


def loss_and_grads(model: RetrievalModel, inputs, chunk_size: int | None) -> tuple[float, torch.Tensor]:
    pixels, _, tokens, image_ids = inputs
    model.zero_grad(set_to_none=True)
    loss = model(pixels, tokens, image_ids, chunk_size=chunk_size)["loss"]
    loss.backward()
    grads = torch.cat([p.grad.flatten() for _, p in model.trainable_parameters()])
    return loss.item(), grads


def grad_difference(grads: torch.Tensor, reference: torch.Tensor) -> float:
    return float((grads - reference).norm() / reference.norm())


# ---------------------------------------------------------------------------------------------------- checks


def check_amp(setup: Setup) -> dict[str, Any]:
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    if setup.device.type != "cuda":
        return {"skipped": "mmengine's AmpOptimWrapper needs CUDA"}
    ieee_float32()
    retrieval = setup.model({"type": "harma"})
    state = {name: value.clone() for name, value in retrieval.state_dict().items()}
    pixels, captions, _, image_ids = setup.batch_of(retrieval, setup.batch)
    data = {"pixels": pixels, "captions": captions, "image_ids": image_ids}
    result: dict[str, Any] = {}
    for name, dtype, chunk_size in (
        ("fp32", None, None),
        ("bf16", "bfloat16", None),
        ("fp16", "float16", None),
        ("bf16_chunked", "bfloat16", setup.chunk),
    ):
        retrieval.load_state_dict(state)
        runner_model = RunnerModel(retrieval, chunk_size).to(setup.device)  # its data preprocessor too
        optimizer = torch.optim.AdamW(parameter_groups(retrieval, 0.04), lr=1e-4)
        wrapper = OptimWrapper(optimizer) if dtype is None else AmpOptimWrapper(optimizer=optimizer, dtype=dtype)
        log = runner_model.train_step(data, wrapper)
        weights = [p for _, p in retrieval.trainable_parameters()]
        moved = sum(float((p - state[n]).abs().max()) > 0 for n, p in retrieval.trainable_parameters())
        result[name] = {
            "loss": float(log["loss"]),
            "weights_finite": all(bool(torch.isfinite(p).all()) for p in weights),
            "tensors_updated": moved,
            "loss_scale": float(wrapper.loss_scaler.get_scale()) if dtype == "float16" else None,
        }
    fp32 = result["fp32"]["loss"]
    for name, tolerance, reference in (
        ("bf16", 2e-2, fp32),
        ("fp16", 1e-2, fp32),
        ("bf16_chunked", 2e-2, result["bf16"]["loss"]),
    ):
        result[name]["relative_to_reference"] = relative(result[name]["loss"], reference)
        require(
            result[name]["relative_to_reference"] <= tolerance,
            f"{name} loss {result[name]['loss']:.5f} vs {reference:.5f}",
        )
    for name, row in result.items():
        require(row["weights_finite"] and torch.isfinite(torch.tensor(row["loss"])), f"{name}: non-finite values")
    # fp16's dynamic loss scale may skip the first step (overflow at 65536); fp32 and bf16 must update
    require(result["fp32"]["tensors_updated"] > 0 and result["bf16"]["tensors_updated"] > 0, "no weight moved")
    return result


def check_chunked(setup: Setup) -> dict[str, Any]:
    ieee_float32()
    model = setup.model({"type": "harma"})
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.04), lr=1e-4)
    small = setup.batch_of(model, setup.chunk)
    large = setup.batch_of(model, setup.paper_batch)

    def step(inputs, chunk_size: int | None) -> dict[str, float | None]:
        pixels, _, tokens, image_ids = inputs
        baseline = setup.reset_peak()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model(pixels, tokens, image_ids, chunk_size=chunk_size)["loss"].backward()
        optimizer.step()
        setup.synchronize()
        return {"seconds": time.perf_counter() - start, "peak_growth_mib": setup.peak_growth_mib(baseline)}

    step(small, None)  # warm-up: kernels chosen, AdamW state allocated
    unchunked_small = step(small, None)
    chunked_large = step(large, setup.chunk)
    chunked_large = step(large, setup.chunk)  # the second, warm
    unchunked_large = step(large, None)
    result: dict[str, Any] = {
        f"batch_{setup.chunk}": unchunked_small,
        f"batch_{setup.paper_batch}_chunk_{setup.chunk}": chunked_large,
        f"batch_{setup.paper_batch}_unchunked": unchunked_large,
        "time_per_sample_ratio": (chunked_large["seconds"] / setup.paper_batch)
        / (unchunked_small["seconds"] / setup.chunk),
    }
    if unchunked_small["peak_growth_mib"] is not None:
        result["memory_ratio"] = chunked_large["peak_growth_mib"] / unchunked_small["peak_growth_mib"]
        result["memory_goal_met"] = result["memory_ratio"] <= 1.3

    loss, grads = loss_and_grads(model, large, setup.chunk)
    expected_loss, expected_grads = loss_and_grads(model, large, None)
    result["loss_relative_difference"] = relative(loss, expected_loss)
    result["grad_relative_difference"] = grad_difference(grads, expected_grads)
    require(result["loss_relative_difference"] <= 1e-4, f"chunked loss {loss} vs {expected_loss}")
    difference = result["grad_relative_difference"]
    require(difference <= 1e-4, f"chunked gradients off by {difference}")

    # dropout drawn on the device: the re-run of each chunk must draw the same masks
    lora = setup.model({"type": "lora", "dropout": 0.1})
    inputs = setup.batch_of(lora, setup.batch)
    pixels, _, tokens, image_ids = inputs
    torch.manual_seed(1)
    _, grads = loss_and_grads(lora, inputs, setup.chunk)
    torch.manual_seed(1)
    lora.zero_grad(set_to_none=True)
    images, texts = [], []
    for start in range(0, setup.batch, setup.chunk):
        rows = slice(start, start + setup.chunk)
        images.append(lora.encode_image(pixels[rows]))
        texts.append(lora.encode_text({key: value[rows] for key, value in tokens.items()}))
    lora.loss.terms(torch.cat(images), torch.cat(texts), image_ids)["loss"].backward()
    replayed = torch.cat([p.grad.flatten() for _, p in lora.trainable_parameters()])
    result["dropout_replay_grad_difference"] = grad_difference(grads, replayed)
    require(result["dropout_replay_grad_difference"] <= 1e-4, "dropout is not replayed in the second pass")
    return result


def check_evaluation(setup: Setup) -> dict[str, Any]:
    ieee_float32()
    model = setup.model({"type": "harma"}).eval()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_synthetic_dataset(folder, train_images=1, val_images=setup.val_images, size=64, seed=0)
        annotations = read_harma_json(paths["val"])
        on_device = embed_split(model, annotations, batch_size=32)
        on_cpu = embed_split(model.cpu(), annotations, batch_size=32)
    caption_image = torch.as_tensor(annotations.caption_image)
    result: dict[str, Any] = {
        "embedding_max_difference": max(float((a - b).abs().max()) for a, b in zip(on_device, on_cpu, strict=True))
    }
    require(result["embedding_max_difference"] <= 1e-3, f"embeddings differ by {result['embedding_max_difference']}")
    images, texts = (emb.to(setup.device) for emb in on_device)
    device_metrics = retrieval_metrics(images, texts, caption_image.to(setup.device))
    cpu_metrics = retrieval_metrics(*on_device, caption_image)
    result["metrics"] = device_metrics
    require(device_metrics == cpu_metrics, f"metrics on {setup.device} {device_metrics} != on CPU {cpu_metrics}")

    n_images, dim = setup.eval_images
    images, texts, caption_image = (t.to(setup.device) for t in synthetic(n_images, dim))
    timings: dict[str, list[float]] = {"retrieval_metrics": [], "products": []}
    peak = None
    for _ in range(2):  # the second of each, warm
        baseline = setup.reset_peak()
        start = time.perf_counter()
        large = retrieval_metrics(images, texts, caption_image)
        setup.synchronize()
        timings["retrieval_metrics"].append(time.perf_counter() - start)
        peak = setup.peak_growth_mib(baseline)
        start = time.perf_counter()
        similarity_products(images, texts)
        setup.synchronize()
        timings["products"].append(time.perf_counter() - start)
    result.update(
        large={"images": n_images, "captions": texts.shape[0], "dim": dim, "mR": large["mR"]},
        retrieval_metrics_seconds=timings["retrieval_metrics"][-1],
        products_seconds=timings["products"][-1],
        time_ratio_vs_products=timings["retrieval_metrics"][-1] / timings["products"][-1],
        peak_growth_mib=peak,
    )
    result["time_goal_met"] = result["time_ratio_vs_products"] <= 1.5
    return result


def _compiled_step(setup: Setup, chunk_size: int | None) -> dict[str, Any]:
    ieee_float32()
    model = setup.model({"type": "harma"})
    inputs = setup.batch_of(model, setup.batch)
    eager_loss, eager_grads = loss_and_grads(model, inputs, chunk_size)
    compiled = torch.compile(model, backend="eager" if setup.smoke else "inductor")
    start = time.perf_counter()
    loss, grads = loss_and_grads(compiled, inputs, chunk_size)
    setup.synchronize()
    result: dict[str, Any] = {
        "compile_and_first_step_s": time.perf_counter() - start,
        "loss_relative_difference": relative(loss, eager_loss),
        "grad_relative_difference": grad_difference(grads, eager_grads),
    }
    for name, module in (("eager", model), ("compiled", compiled)):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            loss_and_grads(module, inputs, chunk_size)
            setup.synchronize()
            times.append(time.perf_counter() - start)
        result[f"{name}_step_s"] = statistics.median(times)
    require(result["loss_relative_difference"] <= 1e-3, f"compiled loss off by {result['loss_relative_difference']}")
    difference = result["grad_relative_difference"]
    require(difference <= 1e-2, f"compiled gradients off by {difference}")
    return result


def check_compile(setup: Setup) -> dict[str, Any]:
    return _compiled_step(setup, None)


def check_compile_chunked(setup: Setup) -> dict[str, Any]:
    return _compiled_step(setup, setup.chunk)


CHECKS: dict[str, Callable[[Setup], dict[str, Any]]] = {
    "amp": check_amp,
    "chunked": check_chunked,
    "evaluation": check_evaluation,
    "compile": check_compile,
    "compile_chunked": check_compile_chunked,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/gpu_check.json"), help="JSON file to write")
    parser.add_argument("--only", choices=list(CHECKS), action="append", help="run only these checks")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny backbone: checks the script, not the GPU")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; this check needs a GPU and has NOT run (--smoke tries it on CPU)")
        return 2
    setup = Setup(args.smoke)
    torch.set_flush_denormal(True)
    report: dict[str, Any] = {
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": torch.cuda.get_device_name(0) if setup.device.type == "cuda" else "cpu (smoke)",
        },
        "smoke": args.smoke,
        "checks": {},
    }
    started = time.perf_counter()
    for name in args.only or list(CHECKS):
        print(f"gpu_check: {name} ...", flush=True)
        begun = time.perf_counter()
        try:
            figures = CHECKS[name](setup)
            status = "skipped" if "skipped" in figures else "passed"
        except Exception as error:  # every check runs and reports, whatever another one did
            figures = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
            status = "FAILED"
        figures["status"], figures["seconds"] = status, round(time.perf_counter() - begun, 1)
        report["checks"][name] = figures
        print(f"gpu_check: {name} {status} ({figures['seconds']} s) {figures.get('error', '')}", flush=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    failed = [name for name, figures in report["checks"].items() if figures["status"] == "FAILED"]
    report["passed"] = not failed
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda path: path.write_text(json.dumps(report, indent=2, default=str) + "\n"))
    outcome = f"FAILED: {', '.join(failed)}" if failed else "all passed"
    print(f"gpu_check: wrote {args.out} ({report['wall_s']} s); {outcome}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
