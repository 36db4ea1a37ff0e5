"""Indexing throughput against the bare encode throughput of the same model (goal: at least 0.9x).

Run as ``python -m benchmarks.search_indexing '{...}'``. The same images are (1) decoded and transformed
up front and fed to ``model.encode_image`` batch after batch: what the model alone does; (2) indexed by
``harma_zoo.search.index_archive`` from their files, decoding in DataLoader workers while the model runs:
images embedded / seconds of the embedding phase (shards included). A ratio near 1 says decoding does
not starve the model. Models: ``tiny`` is the published RSICD adapter (64-pixel tiny ViT: decoding is
the hard part), ``vit-b-32`` HarMA on OpenCLIP ViT-B-32 with random weights (the model is). Images are
RSICD val when the data is there, else synthetic 224-pixel JPEGs written to the index folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._proc import emit, worker_args
from harma_zoo.api import load_pretrained
from harma_zoo.data.images import load_image
from harma_zoo.data.readers import read_annotations
from harma_zoo.data.synthetic import draw_scene, scenes_for
from harma_zoo.engine.checkpoint import save_adapter
from harma_zoo.engine.seeding import isolated_random_state
from harma_zoo.model import build_model
from harma_zoo.search import index_archive

TRANSFER = "harma_tiny-vit-rsicd-source_rsicd"
VIT_B_32 = {"type": "open_clip", "arch": "ViT-B-32"}


def image_files(count: int, data: str, folder: Path) -> list[str]:
    val = Path(data) / "rsicd" / "rsicd_val.json"
    if val.is_file():
        return list(read_annotations("harma_json", val, val.parent / "images").images[:count])
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(scenes_for(count, 0)):
        paths.append(str(folder / f"{i:05d}.jpg"))
        draw_scene(scene, 224, rng).save(paths[-1], quality=90)
    return paths


def model_source(name: str, folder: Path) -> str:
    """A zoo name, or an adapter file written here whose random backbone is rebuilt from its seed."""
    if name == "tiny":
        return TRANSFER
    method = {"type": "harma"}
    with isolated_random_state(0):
        model = build_model(VIT_B_32, method)
    path = folder / "vit-b-32-harma.safetensors"
    save_adapter(model, path, backbone=VIT_B_32, method=method, loss={"type": "harma"}, seed=0)
    return str(path)


def bare_throughput(source: str, files: list[str], batch: int) -> float:
    model, transform, _ = load_pretrained(source)
    pixels = torch.stack([transform(load_image(path, path)) for path in files])
    with torch.no_grad():
        model.encode_image(pixels[:batch])  # warm-up
        started = time.perf_counter()
        for start in range(0, len(pixels), batch):
            model.encode_image(pixels[start : start + batch])
    return len(pixels) / (time.perf_counter() - started)


def main() -> None:
    args: dict[str, Any] = worker_args()
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    files = image_files(args["images"], args["data"], out / "images")
    listing = out / "archive.txt"
    listing.write_text("".join(f"{path}\n" for path in files))
    source = model_source(args["model"], out)
    bare = bare_throughput(source, files, args["batch"])
    report = index_archive(listing, source, out / "index", batch_size=args["batch"], workers=args["workers"],
                           progress=False)  # fmt: skip
    indexing = report.embedded / report.embed_seconds
    emit({
        "model": args["model"],
        "images": len(files),
        "batch": args["batch"],
        "workers": args["workers"],
        "bare_images_per_s": bare,
        "index_images_per_s": indexing,
        "ratio": indexing / bare,
        "index_wall_s": report.seconds,
        "index": str(out / "index"),
    })  # fmt: skip


if __name__ == "__main__":
    main()
