"""What the front end's legend shows: each concept's colour and its share of each picture (or clip)."""

from __future__ import annotations

from .colors import color_hex, concept_colors_u8
from .saliency_maps import SaliencyMaps


def concept_legend(saliency: SaliencyMaps) -> list[dict]:
    """One entry per concept: name, hex colour (exactly the segmentation view's), index, and its share
    of the picture: the fraction of the picture's tokens where the concept has the highest score.

    shares: one share per picture of the batch (the legend shows the share of the picture on
    screen); share: the share over the whole batch. For a video a "picture" is a whole clip: its
    shares count the tokens of every token frame of the clip, so they describe the clip, not one frame.
    """
    r = len(saliency.names)
    winners = saliency.maps.argmax(dim=1).flatten(1)  # [B, h·w], or [B, T·h·w] for a video
    tokens = max(winners.shape[1], 1)
    counts = [[int((row == i).sum()) for row in winners] for i in range(r)]
    batch_tokens = max(tokens * winners.shape[0], 1)
    colors = concept_colors_u8(r)
    return [
        {
            "name": name,
            "color": color_hex(colors[i]),
            "share": round(sum(counts[i]) / batch_tokens, 4),
            "shares": [round(c / tokens, 4) for c in counts[i]],
            "index": i,
        }
        for i, name in enumerate(saliency.names)
    ]
