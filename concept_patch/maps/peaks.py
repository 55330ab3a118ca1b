"""Peaks of concept maps: where a concept is strongest, as points for a point-prompted segmenter (SAM 3).

A peak of concept c on one map frame [r, h, w] is a token where
  - c wins: its score is the largest of all concepts' there (ties: the first concept, as argmax takes it), so a
    positive point never lands on another concept's ground, and
  - c's score is a local maximum: equal to the largest of c's scores in its 3x3 neighbourhood (a plateau gives
    several such tokens; the spacing below keeps one).
Peaks are taken strongest first (ties: raster order), each at least `spacing` tokens (Chebyshev distance) from
the ones already taken, up to a count. A point is the centre of its token's cell in pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks.errors import ConceptAttentionError

DEFAULT_SPACING = 2


def concept_peaks(frame_maps: torch.Tensor, concept: int, count: int, spacing: int = DEFAULT_SPACING) -> list[tuple[int, int]]:
    """Up to `count` peaks (row, column) of concept `concept` on frame_maps [r, h, w], strongest first."""
    if frame_maps.ndim != 3:
        raise ConceptAttentionError(f"expected one frame's maps [concepts, h, w], got shape {tuple(frame_maps.shape)}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConceptAttentionError(f"the number of points must be a whole number >= 0, got {count!r}")
    if isinstance(spacing, bool) or not isinstance(spacing, int) or spacing < 1:
        raise ConceptAttentionError(f"the spacing of points must be a whole number of tokens >= 1, got {spacing!r}")
    if count == 0:
        return []
    maps = frame_maps.float()
    scores = maps[concept]
    wins = maps.argmax(dim=0) == concept
    local_max = F.max_pool2d(scores[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
    candidates = wins & (scores >= local_max)
    rows, cols = torch.nonzero(candidates, as_tuple=True)
    if rows.numel() == 0:
        return []
    values = scores[rows, cols]
    # strongest first; equal scores keep raster order (nonzero gives raster order, the sort is stable)
    order = torch.sort(values, descending=True, stable=True).indices
    taken: list[tuple[int, int]] = []
    for k in order.tolist():
        row, col = int(rows[k]), int(cols[k])
        if all(max(abs(row - r), abs(col - c)) >= spacing for r, c in taken):
            taken.append((row, col))
            if len(taken) == count:
                break
    return taken


def token_centre(row: int, col: int, grid: tuple[int, int], size: tuple[int, int]) -> dict:
    """{"x", "y"}: the pixel (ints) at the centre of token (row, col) of a grid (h, w) over a picture (H, W), the
    point format of SAM3_Detect's positive_coords / negative_coords."""
    (h, w), (height, width) = grid, size
    x = min(width - 1, int((col + 0.5) * width / w))
    y = min(height - 1, int((row + 0.5) * height / h))
    return {"x": x, "y": y}
