"""JSON Schemas shipped inside the package, found through importlib.resources.

Built-in plugins keep their schemas in the ``arrowbulk.schemas`` package, one folder per
plugin (``schemas/<plugin>/<name>.json`` in the repo); a third-party plugin may return any
schema it likes from ``config_schema()``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_schema(plugin: str, name: str) -> dict[str, Any]:
    """The parsed schema ``<plugin>/<name>`` from the ``arrowbulk.schemas`` package."""
    resource = resources.files("arrowbulk.schemas").joinpath(plugin, name)
    loaded: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return loaded
