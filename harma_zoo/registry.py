"""The code-side registries of harma-zoo, in one place (OpenMMLab style).

Each registry maps a short name to a class; ``locations`` lists the modules that
register into it, so that ``build`` works without the caller importing them first.
Installed plug-ins (``harma_zoo.plugins``) are imported the first time names are looked up.
"""

from mmengine.registry import Registry

from harma_zoo.plugins import load_entry_points

BACKBONES = Registry("backbone family", locations=["harma_zoo.backbones"])
METHODS = Registry("method", locations=["harma_zoo.methods"])
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
