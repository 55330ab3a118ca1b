"""The preview's soundtrack strip: under every panel of a clip that has a soundtrack (soundtrack.py), a band that
shows the whole soundtrack in the concepts' legend colours, time running left to right, with a playhead at the
frame shown.

Each column of the band is one stretch of the clip's time (the audio frames spread evenly over the band's width, as
the audio spans the clip); its height is split, top down in concept order, in proportion to the concepts' shares of
that stretch's audio (softmax shares), so a concept heard throughout is a continuous ribbon of its colour. With
softmax off the shares are raw scores without a common scale: a column is then the colour of the concept that scores
highest there. The playhead (a white line) sits at the middle of the pixel frame the sheet shows.
"""

from __future__ import annotations

import torch

from .colors import concept_colors
from .labels import STRIP_BACKGROUND
from .saliency_maps import SaliencyMaps
from .soundtrack import Soundtrack, soundtrack_of

# Band height: a twelfth of the panel's width, between these bounds (pixels).
BAND_MIN, BAND_MAX = 6, 32
PLAYHEAD = (1.0, 1.0, 1.0)


def shows_soundtrack(saliency: SaliencyMaps) -> bool:
    """Whether this preview has a soundtrack band: a video whose SALIENCY has a soundtrack (a malformed one is refused
    by soundtrack_of)."""
    return saliency.is_video and soundtrack_of(saliency) is not None


def band_height(panel: tuple[int, int]) -> int:
    """Height of the soundtrack band under a panel of this size (a twelfth of its width, within bounds)."""
    return max(BAND_MIN, min(BAND_MAX, round(panel[1] / 12)))


def column_weights(soundtrack: Soundtrack, clip: int, width: int) -> torch.Tensor:
    """The concepts' part of each of `width` columns [width, r], summing to 1: the share of the audio frame under the
    column's middle (softmax shares, renormalised against rounding), or 1 for the highest-scoring concept."""
    shares = soundtrack.shares[clip]  # [r, A]
    frames = shares.shape[-1]
    at = torch.div((2 * torch.arange(width) + 1) * frames, 2 * width, rounding_mode="floor").clamp(max=frames - 1)
    if not soundtrack.probabilities:
        return torch.nn.functional.one_hot(shares.argmax(dim=0)[at], shares.shape[0]).float()
    weights = shares[:, at].T.clamp(min=0.0)
    total = weights.sum(dim=1, keepdim=True)
    even = torch.full_like(weights, 1.0 / weights.shape[1])
    return torch.where(total > 0, weights / total.clamp(min=1e-12), even)


def soundtrack_band(soundtrack: Soundtrack, clip: int, size: tuple[int, int]) -> torch.Tensor:
    """The band of one clip without its playhead, [height, width, 3] float 0-1: stacked concept colours per column,
    its top row the strip background (a rule between the caption above and the band) where the band has room."""
    height, width = size
    weights = column_weights(soundtrack, clip, width)  # [W, r]
    rule = 1 if height >= 8 else 0
    rows = height - rule
    ends = weights.cumsum(dim=1)  # [W, r]
    middles = (torch.arange(rows, dtype=torch.float32) + 0.5) / rows  # [rows]
    index = (ends[None, :, :] <= middles[:, None, None]).sum(dim=-1).clamp(max=weights.shape[1] - 1)  # [rows, W]
    band = torch.empty(height, width, 3)
    band[:rule] = torch.tensor(STRIP_BACKGROUND, dtype=torch.float32) / 255.0
    band[rule:] = concept_colors(weights.shape[1])[index]
    return band


def playhead_column(frame: int, frames: int, width: int) -> int:
    """The band column of pixel frame `frame`'s middle, of `frames` frames over `width` columns."""
    return min(width - 1, (2 * frame + 1) * width // (2 * max(1, frames)))


def draw_soundtracks(out: torch.Tensor, saliency: SaliencyMaps, layout) -> None:
    """Draw the band under every panel of every sheet of a preview (render_preview's `out`, laid out by
    panels.sheet_layout with its `band` rows), in place; nothing without a band."""
    if not layout.band:
        return
    soundtrack = soundtrack_of(saliency)
    width = layout.panel[1]
    top = layout.panel[0] + layout.strip
    line = torch.tensor(PLAYHEAD)
    for clip in range(layout.clips):
        band = soundtrack_band(soundtrack, clip, (layout.band, width))
        rule = 1 if layout.band >= 8 else 0
        for frame in range(layout.frames):
            shown = band.clone()
            shown[rule:, playhead_column(frame, layout.frames, width)] = line
            for k in range(layout.panels):
                y, x = layout.box(k)
                out[layout.sheet(clip, frame, k), y + top : y + top + layout.band, x : x + width] = shown
