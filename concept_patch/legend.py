"""What the front end's legend shows: each concept's colour and its share of the image."""

from __future__ import annotations

from .heatmap import concept_colors
from .saliency_maps import SaliencyMaps


def concept_legend(saliency: SaliencyMaps) -> list[dict]:
    """One entry per concept: name, hex colour (as in the segmentation preview), and share of the
    image = fraction of tokens (over the whole batch) where that concept has the highest score."""
    r = len(saliency.names)
    winners = saliency.maps.argmax(dim=1)
    total = max(winners.numel(), 1)
    colors = (concept_colors(r).clamp(0, 1) * 255).round().int().tolist()
    return [
        {
            "name": name,
            "color": "#{:02x}{:02x}{:02x}".format(*colors[i]),
            "share": round(float((winners == i).sum()) / total, 4),
            "index": i,
        }
        for i, name in enumerate(saliency.names)
    ]
