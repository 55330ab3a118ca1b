"""One place that fills in what every node of the pack's schema repeats (its category)."""

from __future__ import annotations

from comfy_api.latest import io

from .types import CATEGORY


def pack_schema(node_id: str, display_name: str, description: str, **fields) -> io.Schema:
    """io.Schema of the pack's node `node_id` (written out in full, so a search finds it), in CATEGORY; the other
    fields go through as given."""
    return io.Schema(node_id=node_id, display_name=display_name, category=CATEGORY,
                     description=description, **fields)
