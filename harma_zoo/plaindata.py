"""Config values as plain JSON data, the one form in which they are compared, hashed and stored."""

from __future__ import annotations

import json
from typing import Any


def as_json_data(value: Any) -> Any:
    """``value`` as JSON would give it back: mmengine ConfigDicts as dicts, tuples as lists, keys as strings.

    Why one helper: a checkpoint records its method options as JSON, and a registry entry and a bench
    result record them again; comparing any two of them is only right in the same normal form.
    """
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.loads(json.dumps(value, default=list))
