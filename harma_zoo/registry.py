"""The code-side registries of harma-zoo, in one place (OpenMMLab style).

Each registry maps a short name to a class; ``locations`` lists the modules that
register into it, so that ``build`` works without the caller importing them first.
"""

from mmengine.registry import Registry

BACKBONES = Registry("backbone family", locations=["harma_zoo.backbones"])
METHODS = Registry("method", locations=["harma_zoo.methods"])
LOSSES = Registry("loss", locations=["harma_zoo.losses"])
READERS = Registry("annotation reader", locations=["harma_zoo.data.readers"])


def registered_names(registry: Registry) -> list[str]:
    """Names in ``registry`` after importing its locations, sorted."""
    registry.import_from_location()
    return sorted(registry.module_dict)


def get_class(registry: Registry, name: str) -> type:
    """Class registered as ``name``; an unknown name raises KeyError listing the known ones."""
    names = registered_names(registry)
    if name not in names:
        raise KeyError(f"unknown {registry.name} {name!r}; registered: {', '.join(names)}")
    return registry.module_dict[name]
