"""Whether the chosen concepts are in a picture (or clip) at all: the default mask of an absent concept is empty.

A relative cut (above the map's mean) always selects part of the map, so a concept the picture does
not show would still get about half of it. A concept is present in a clip when it wins at least one
token of one token frame (the legend's share is above 0 %). With one concept there is nothing to win
against: it is present where its evidence is above chance, i.e. a softmax over one concept (1
everywhere) never is, and a raw score is where it is positive (a sigmoid above one half).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .saliency_maps import SaliencyMaps


def present_clips(saliency: SaliencyMaps, selected: Sequence[int]) -> list[bool]:
    """Per clip (a picture is a clip of one frame): does any of the `selected` concepts appear in it?"""
    clips = saliency.clips  # [B, r, T, h, w]
    if clips.shape[1] == 1:
        if saliency.softmax:
            return [False] * clips.shape[0]
        return [bool((clip > 0).any()) for clip in clips[:, 0]]
    winners = clips.argmax(dim=1).flatten(1)  # [B, T·h·w]
    chosen = torch.tensor(sorted(set(selected)), dtype=winners.dtype)
    return [bool(row.any()) for row in torch.isin(winners, chosen)]


def absence_note(saliency: SaliencyMaps, names: Sequence[str], present: Sequence[bool]) -> str:
    """What the node says when some clips got an empty mask because the concepts are absent from them."""
    absent = [i for i, p in enumerate(present) if not p]
    if not absent:
        return ""
    unit = "clip" if saliency.is_video else "picture"
    where = f"this {unit}" if saliency.batch_size == 1 else \
        f"{unit}{'s' if len(absent) > 1 else ''} {', '.join(str(i + 1) for i in absent)} of {saliency.batch_size}"
    what = ", ".join(repr(n) for n in names)
    if len(saliency.names) == 1:
        why = "one concept has nothing to win against: add another (e.g. 'background')"
    else:
        why = "it wins no part of it" + (" in any frame" if saliency.is_video else "") + " (0 % in the legend)"
    return (f"Empty mask for {what} in {where}: {why}. "
            "Method relative_mean masks the strongest half of its map anyway.")
