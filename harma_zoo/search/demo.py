"""The inputs of ``make search-demo``: RSICD val as a list file, and a synthetic georeferenced scene.

``python -m harma_zoo.search.demo OUT`` writes ``OUT/rsicd-val.txt`` (the 1,966 validation images
of RSICD, one path a line, from ``$HARMA_ZOO_DATA`` or ``../shared/data``) and ``OUT/scene.tif``
(3 x 3 synthetic aerial tiles of 224 pixels in UTM zone 31N). The Makefile then indexes and
searches both with ``harma-zoo``, as a user would.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harma_zoo.data.readers import read_annotations
from harma_zoo.fileio import atomic_write
from harma_zoo.search.geo import write_synthetic_scene


def write_demo_inputs(out: Path, data: Path) -> tuple[Path, Path]:
    rsicd = data / "rsicd"
    if not (rsicd / "rsicd_val.json").is_file():
        raise FileNotFoundError(f"RSICD is not in {rsicd} (expected rsicd_val.json and images/); set HARMA_ZOO_DATA")
    val = read_annotations("harma_json", rsicd / "rsicd_val.json", rsicd / "images")
    listing = out / "rsicd-val.txt"
    atomic_write(listing, lambda temporary: temporary.write_text("".join(f"{path}\n" for path in val.images)))
    return listing, write_synthetic_scene(out / "scene.tif", tiles=3, tile_size=224)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write the list file and the scene to")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HARMA_ZOO_DATA", "../shared/data")))
    args = parser.parse_args()
    for path in write_demo_inputs(args.out, args.data):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
