"""One place that fills in what every node of the pack's schema repeats (id prefix, category)."""

from __future__ import annotations

from comfy_api.latest import io

from .types import CATEGORY, NODE_PREFIX


def pack_schema(name: str, display_name: str, description: str, **fields) -> io.Schema:
    """io.Schema of the pack's node `name`: id NODE_PREFIX + name, in CATEGORY; fields go through as given."""
    return io.Schema(node_id=f"{NODE_PREFIX}{name}", display_name=display_name, category=CATEGORY,
                     description=description, **fields)
