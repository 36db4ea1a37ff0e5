"""Evaluation cost at benchmark sizes on synthetic embeddings: ``retrieval_metrics`` against brute force.

Run as ``python -m benchmarks.evaluation '{"images": 452, "dim": 512, "how": "chunked"}'``. Embeddings are
random unit vectors, five captions per image, each caption its image's vector plus noise (so recalls are
neither 0 nor 100). ``how``:

- ``chunked``: ``harma_zoo.engine.metric.retrieval_metrics`` (blocks of images, never the full matrix).
- ``brute``: the full ``images x captions`` similarity matrix, both directions ranked by ``argsort``
  (the rank of every entry via the inverse permutation); random floats do not tie, so both agree.
- ``matmul``: the similarity products alone, the floor of any exact evaluation: blocks of as many
  images as ``retrieval_metrics`` scores at once (its default block budget, for distinct captions)
  times every caption, into one reused buffer. No metric comes out of it.

The baseline of the peak-RSS figure is taken after the embeddings exist, with the kernel's peak mark reset
to the RSS of that moment (the temporaries of drawing them would otherwise hide a smaller peak).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from benchmarks._proc import emit, max_rss_mib, reset_peak_rss, worker_args
from harma_zoo.engine.metric import DEFAULT_BLOCK_BYTES, recalls_from_ranks, retrieval_metrics

CAPTIONS_PER_IMAGE = 5


def synthetic(n_images: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(n_images, dim, generator=generator), dim=1)
    caption_image = torch.arange(n_images).repeat_interleave(CAPTIONS_PER_IMAGE)
    noise = torch.randn(caption_image.numel(), dim, generator=generator) * (6.0 / dim**0.5)
    texts = F.normalize(images[caption_image] + noise, dim=1)
    return images, texts, caption_image


def brute_force_metrics(images: torch.Tensor, texts: torch.Tensor, caption_image: torch.Tensor) -> dict[str, float]:
    """Full similarity matrix and argsort ranks of every entry in both directions."""
    scores = images @ texts.T
    n_img, n_cap = scores.shape
    # image -> text: position of every caption in each image's sorted row; the best own caption's position.
    order = torch.argsort(scores, dim=1, descending=True)
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(n_cap).expand(n_img, n_cap))
    del order
    own = position.gather(1, torch.argsort(caption_image).view(n_img, CAPTIONS_PER_IMAGE))
    i2t = own.min(dim=1).values
    del position, own
    # text -> image: position of each caption's own image in its sorted column.
    order = torch.argsort(scores, dim=0, descending=True)
    position = torch.empty_like(order)
    position.scatter_(0, order, torch.arange(n_img).unsqueeze(1).expand(n_img, n_cap))
    t2i = position[caption_image, torch.arange(n_cap)]
    return recalls_from_ranks(i2t, t2i)


def similarity_products(images: torch.Tensor, texts: torch.Tensor) -> None:
    """Every image-caption product, block by block as ``retrieval_metrics`` forms them, and nothing else."""
    rows = min(images.shape[0], max(1, DEFAULT_BLOCK_BYTES // (2 * texts.shape[0] * texts.element_size())))
    texts_t = texts.T
    buffer = torch.empty(rows, texts.shape[0], dtype=texts.dtype, device=texts.device)
    for start in range(0, images.shape[0], rows):
        block = images[start : start + rows]
        torch.mm(block, texts_t, out=buffer[: block.shape[0]])


def main() -> None:
    args = worker_args()
    images, texts, caption_image = synthetic(args["images"], args["dim"])
    peak_reset = reset_peak_rss()
    baseline = max_rss_mib()
    start = time.perf_counter()
    metrics = {"mR": None}
    if args["how"] == "brute":
        metrics = brute_force_metrics(images, texts, caption_image)
    elif args["how"] == "matmul":
        similarity_products(images, texts)
    else:
        metrics = retrieval_metrics(images, texts, caption_image)
    seconds = time.perf_counter() - start
    emit(
        {
            "seconds": seconds,
            "peak_rss_growth_mib": max_rss_mib() - baseline,
            "mR": metrics["mR"],
            "peak_reset": peak_reset,
        }
    )


if __name__ == "__main__":
    main()
