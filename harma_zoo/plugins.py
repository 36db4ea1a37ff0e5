"""Plug-ins: a user's own backbone families, methods, losses and readers, imported before they are named.

A plug-in is a Python module that registers classes in the registries of ``harma_zoo.registry``
when it is imported. It comes in one of three ways:

- ``harma-zoo --import MODULE`` (any subcommand, repeatable): a dotted module name importable from
  ``sys.path``, or the path of a ``.py`` file (a family in one file needs no package);
- an installed package's entry point in the group ``harma_zoo.plugins``, imported the first time
  a registry is asked for its names (``get_class``, ``registered_names``) and before every subcommand
  (``HARMA_ZOO_DISABLE_PLUGIN_AUTOLOAD=1`` skips them, as pytest's variable does for its plug-ins:
  a broken one then blocks nothing);
- a recipe's ``custom_imports = dict(imports=[...])``, which mmengine's ``Config.fromfile`` honours.

Importing runs the plug-in's code: like recipes, plug-ins are code the user chose to run.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

ENTRY_POINT_GROUP = "harma_zoo.plugins"
DISABLE_AUTOLOAD = "HARMA_ZOO_DISABLE_PLUGIN_AUTOLOAD"


class PluginError(ImportError):
    """A plug-in failed to import; the message names the plug-in (and its entry point) and the cause."""


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _import_file(path: Path) -> ModuleType:
    """The ``.py`` file at ``path`` as the module named by its stem (importlib's recipe for a source file)."""
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    name = path.stem
    if not name.isidentifier():
        raise ValueError(f"{path.name} is no module name (letters, digits and '_')")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", None) or "").resolve() == path.resolve():
            return loaded
        raise ValueError(f"another module named {name!r} is already imported ({loaded!r}); rename the file")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it, as `import` does: its classes can then be pickled
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_plugin(spec: str) -> ModuleType:
    """Import one ``--import`` value: a dotted module name, or a ``.py`` file's path."""
    try:
        return _import_file(Path(spec)) if _is_file(spec) else importlib.import_module(spec)
    except Exception as error:  # whatever the user's module raised: one line that names it
        raise PluginError(f"plug-in --import {spec} failed to import: {type(error).__name__}: {error}") from error


@functools.cache
def load_entry_points() -> tuple[str, ...]:
    """Import every installed plug-in (entry point group ``harma_zoo.plugins``) once; returns their names.

    A failure is not cached: it is raised again by the next call, with the same message.
    """
    if os.environ.get(DISABLE_AUTOLOAD):
        return ()
    loaded = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as error:
            package = f" of package {point.dist.name}" if point.dist is not None else ""
            raise PluginError(
                f"plug-in {point.name!r}{package} (entry point {ENTRY_POINT_GROUP}: {point.name} = {point.value}) "
                f"failed to import: {type(error).__name__}: {error}"
            ) from error
        loaded.append(point.name)
    return tuple(loaded)


def load_plugins(imports: Iterable[str] = ()) -> None:
    """The installed plug-ins, then each ``--import`` value in order: what the CLI does before a subcommand."""
    load_entry_points()
    for spec in imports:
        import_plugin(spec)
