"""The code-side registries of harma-zoo, in one place (OpenMMLab style).

Each registry maps a short name to a class; ``locations`` lists the modules that
register into it, so that ``build`` works without the caller importing them first.
Backbone families and methods are found by listing their package: every module in
``harma_zoo/backbones/`` and ``harma_zoo/methods/`` is imported, so a new family or
method is one new file that registers itself, with no list to edit elsewhere.
Installed plug-ins (``harma_zoo.plugins``) are imported the first time names are looked up.
"""

import importlib.util
import pkgutil

from mmengine.registry import Registry

from harma_zoo.plugins import load_entry_points


def package_modules(package: str) -> list[str]:
    """Dotted names of every module in ``package``, found on disk without importing them."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"{package} is not a package")
    return [f"{package}.{module.name}" for module in pkgutil.iter_modules(spec.submodule_search_locations)]


BACKBONES = Registry("backbone family", locations=package_modules("harma_zoo.backbones"))
METHODS = Registry("method", locations=package_modules("harma_zoo.methods"))
LOSSES = Registry("loss", locations=["harma_zoo.losses"])
READERS = Registry("annotation reader", locations=["harma_zoo.data.readers"])


def registered_names(registry: Registry) -> list[str]:
    """Names in ``registry`` after importing its locations and the installed plug-ins, sorted."""
    registry.import_from_location()
    load_entry_points()
    return sorted(registry.module_dict)


def get_class(registry: Registry, name: str) -> type:
    """Class registered as ``name``; an unknown name raises KeyError listing the known ones."""
    names = registered_names(registry)
    if name not in names:
        raise KeyError(f"unknown {registry.name} {name!r}; registered: {', '.join(names)}")
    return registry.module_dict[name]
