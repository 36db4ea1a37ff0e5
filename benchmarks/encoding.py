"""Encoding throughput (eval mode, no_grad): the bare backbone against the backbone with a method attached.

Run as ``python -m benchmarks.encoding '{...}'``; both models are built in the one process, the bare one
from the same seed, and timed alternately so that a slow patch of the machine hits both.
"""

from __future__ import annotations

import torch

from benchmarks._proc import emit, median, timed, worker_args
from harma_zoo.model import build_backbone, build_model

CAPTION = "a large number of cars are parked in the parking lot near a white building"


def main() -> None:
    args = worker_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    bare = build_backbone(args["backbone"]).eval()
    attached = build_model(args["backbone"], {"type": args["method"]}).eval()
    batch = args["batch"]
    pixels = torch.randn(batch, 3, args["image_size"], args["image_size"])
    tokens = bare.tokenize([f"{CAPTION} {i}" for i in range(batch)])

    result: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name, encode_image, encode_text in (
            ("bare", bare.encode_image, bare.encode_text),
            (args["method"], attached.encode_image, attached.encode_text),
        ):
            image_s = median(timed(lambda f=encode_image: f(pixels), args["warmup"], args["repeats"]))
            text_s = median(timed(lambda f=encode_text: f(tokens), args["warmup"], args["repeats"]))
            result[name] = {"images_per_s": batch / image_s, "captions_per_s": batch / text_s}
    emit({"batch": batch, "method": args["method"], "throughput": result})


if __name__ == "__main__":
    main()
