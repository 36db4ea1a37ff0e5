"""``zoo:NAME`` as a backbone's weights: the registry entry NAME's weights, fetched when needed.

Why: a recipe that starts from a backbone published in the zoo (e.g. one pretrained here) then
reads the same on every machine, and the weights file is checked against the registry's sha256
before it is used, instead of trusting whatever sits at a local path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harma_zoo.hub.entries import fetch_entry
from harma_zoo.hub.index import ZOO_PREFIX, backbone_matches, load_index, weights_option


def zoo_reference(config: Mapping[str, Any]) -> str | None:
    """The entry name when ``config``'s weights option is ``zoo:NAME``, else None."""
    value = config.get(weights_option(str(config.get("type"))))
    if isinstance(value, str) and value.startswith(ZOO_PREFIX):
        return value.removeprefix(ZOO_PREFIX)
    return None


def resolve_zoo_weights(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with ``zoo:NAME`` weights replaced by what the family loads: the fetched file, tag or hub id.

    The entry must be of the config's family and architecture: a ``zoo:`` name never silently
    loads weights into another model.
    """
    name = zoo_reference(config)
    if name is None:
        return dict(config)
    index = load_index()
    entry = index.backbone(name)
    if not backbone_matches(entry, dict(config)):
        raise ValueError(
            f"backbone config {dict(config)} names weights {ZOO_PREFIX}{name}, but zoo entry {name!r} is "
            f"family {entry.family!r} with architecture {entry.architecture}; use the entry's family and architecture"
        )
    option = weights_option(entry.family)
    fetched = fetch_entry(index, name, progress=False)
    return {**config, option: fetched.config.get(option)}  # None: the entry's weights are random
