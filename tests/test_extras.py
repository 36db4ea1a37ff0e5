"""The core works without the optional extras (plot, parquet, siglip, docs), and says which extra a feature needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine_helpers import write_recipe

PROJECT = Path(__file__).resolve().parents[1]
EXTRA_MODULES = ("matplotlib", "pyarrow", "sentencepiece", "mkdocs")

# Run first in the child interpreter: importing any module of an extra fails as if it were not installed.
# (find_spec still answers: transformers asks it at import time whether sentencepiece is there.)
WITHOUT_EXTRAS = f"""
import importlib.abc, importlib.machinery, sys

class NotInstalled(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRA_MODULES!r}:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}}", name=spec.name)

    def exec_module(self, module):
        pass

sys.meta_path.insert(0, NotInstalled())
EXTRA_MODULES = {EXTRA_MODULES!r}
"""

CORE = """
import json, sys
import harma_zoo
from harma_zoo.cli import main
from harma_zoo.data.readers import read_annotations

model, transform, tokenizer = harma_zoo.load_pretrained("harma_tiny-vit-rsicd-source_rsicd")
assert model.encode_text(tokenizer(["a beach"])).shape[0] == 1
code = main(["bench", "--recipes", sys.argv[1], "--methods", "frozen", "--out", sys.argv[2]])
try:
    read_annotations("parquet", sys.argv[2])
except ModuleNotFoundError as error:
    parquet = str(error)
print(json.dumps({"bench": code, "parquet": parquet, "loaded": sorted(set(sys.modules) & set(EXTRA_MODULES))}))
"""


def test_the_core_runs_without_the_extras_and_names_them(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, schedule__epochs=1)
    env = {**os.environ, "HARMA_ZOO_HOME": str(tmp_path / "home")}
    env.pop("HARMA_ZOO_REGISTRY", None)
    command = [sys.executable, "-c", WITHOUT_EXTRAS + CORE, str(recipe), str(tmp_path / "out")]
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bench"] == 0 and report["loaded"] == []
    assert "pip install 'harma-zoo[parquet]'" in report["parquet"]
    assert "pip install 'harma-zoo[plot]'" in " ".join(done.stdout.split())
    assert {p.name for p in (tmp_path / "out").glob("leaderboard.*")} == {
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.json",
    }
