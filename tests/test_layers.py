"""The package's layers only point down: a module imports from its own layer or the ones below.

Layers, lowest first (the README's "Layout" states the same):

0. foundations: ``plaindata``, ``fileio``, ``resources``, ``registry``, ``plugins`` (and the package's ``__version__``)
1. ``hub``: the registry index, verified downloads, ``zoo:`` references
2. the model: ``insertion``, ``backbones``, ``methods``, ``losses``, ``data``, ``model``, ``params``, ``recompute``
3. ``engine``: training, evaluation, checkpoints
4. ``api``: the public Python API (``harma_zoo.load_pretrained`` ...)
5. tools on the API: ``search``, ``zoo`` (publish, cards, catalog, export, convert)
6. ``bench``
7. ``cli``

Every import counts, the ones inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harma_zoo"

LAYERS: dict[str, int] = {
    "plaindata": 0,
    "fileio": 0,
    "resources": 0,
    "registry": 0,
    "plugins": 0,
    "hub": 1,
    "insertion": 2,
    "backbones": 2,
    "methods": 2,
    "losses": 2,
    "data": 2,
    "model": 2,
    "params": 2,
    "recompute": 2,
    "engine": 3,
    "api": 4,
    "search": 5,
    "zoo": 5,
    "bench": 6,
    "cli": 7,
}
# What ``from harma_zoo import X`` reaches: the version is a foundation, everything else the public API.
PACKAGE_NAMES = {"__version__": 0}


def _layer_of_module(dotted: str) -> int:
    parts = dotted.split(".")
    assert parts[0] == "harma_zoo"
    if len(parts) == 1:
        return LAYERS["api"]
    if parts[1] not in LAYERS:
        raise AssertionError(f"harma_zoo.{parts[1]} has no layer: add it to LAYERS here and to the README")
    return LAYERS[parts[1]]


def _imports(path: Path) -> list[tuple[int, int]]:
    """(line, layer) of every harma_zoo import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, _layer_of_module(a.name)) for a in node.names if a.name.startswith("harma_zoo")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("harma_zoo"):
            if node.module == "harma_zoo":
                found += [(node.lineno, PACKAGE_NAMES.get(a.name, LAYERS["api"])) for a in node.names]
            else:
                found.append((node.lineno, _layer_of_module(node.module)))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above_its_own(path: Path) -> None:
    relative = path.relative_to(PACKAGE).with_suffix("")
    own = _layer_of_module(".".join(("harma_zoo", *relative.parts)))
    upward = [(line, layer) for line, layer in _imports(path) if layer > own]
    names = {layer: name for name, layer in sorted(LAYERS.items(), key=lambda item: -item[1])}
    assert not upward, f"{relative} (layer {own}) imports from above: " + ", ".join(
        f"line {line}: layer {layer} ({names[layer]}...)" for line, layer in upward
    )


def test_every_subpackage_and_module_has_a_layer() -> None:
    tops = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if not p.name.startswith(("_", "."))}
    assert tops <= set(LAYERS), f"without a layer: {sorted(tops - set(LAYERS))}"
