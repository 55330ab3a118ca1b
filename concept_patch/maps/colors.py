"""Colours of the previews, the legend and the heatmap files: inferno for scores, a fixed palette
for concepts, and the one score scale shared by every map of a SALIENCY.

One module, so the legend's swatches, the segmentation view and the files cannot drift apart.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import torch

from .saliency_maps import SaliencyMaps

# Inferno (perceptually uniform, dark = low) sampled at 9 evenly spaced points; linear in between.
_INFERNO_ANCHORS = torch.tensor(
    [
        [0.001462, 0.000466, 0.013866],
        [0.087411, 0.044556, 0.224813],
        [0.258234, 0.038571, 0.406485],
        [0.416331, 0.090203, 0.432943],
        [0.578304, 0.148039, 0.404411],
        [0.735683, 0.215906, 0.330245],
        [0.865006, 0.316822, 0.226055],
        [0.954506, 0.468744, 0.099874],
        [0.988362, 0.998364, 0.644924],
    ],
    dtype=torch.float32,
)

# Distinct, saturated colours for the first concepts (Tableau 10); more are spread by golden-ratio hue.
_PALETTE = [
    (0.122, 0.467, 0.706),
    (1.000, 0.498, 0.055),
    (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741),
    (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761),
    (0.498, 0.498, 0.498),
    (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
]

# The picture under a heatmap: its gray levels squeezed into PICTURE_BAND and mixed in at
# PICTURE_WEIGHT, so it can move a pixel's colour by at most
# PICTURE_WEIGHT * (PICTURE_BAND[1] - PICTURE_BAND[0]) = 0.1 on every channel: the shapes of the
# picture stay visible, but a bright sun never looks "hot" (the colour scale spans 0 to 1).
PICTURE_WEIGHT = 0.2
PICTURE_BAND = (0.25, 0.75)


def colorize(scores: torch.Tensor) -> torch.Tensor:
    """Map scores in [0, 1] (any shape [...]) to inferno colours [..., 3]; out-of-range values clamp, NaN -> 0."""
    x = torch.nan_to_num(scores.detach().float().cpu(), nan=0.0).clamp(0.0, 1.0)
    steps = _INFERNO_ANCHORS.shape[0] - 1
    pos = x * steps
    i0 = pos.floor().long().clamp(max=steps - 1)
    frac = (pos - i0).unsqueeze(-1)
    return torch.lerp(_INFERNO_ANCHORS[i0], _INFERNO_ANCHORS[i0 + 1], frac)


def concept_colors_u8(r: int) -> list[tuple[int, int, int]]:
    """r distinct colours as 8-bit RGB (fixed order, so concept i always gets the same colour).

    The legend's swatches and the segmentation view use exactly these values."""
    colors = list(_PALETTE[:r])
    for i in range(len(colors), r):
        hue = (0.13 + i * 0.618033988749895) % 1.0
        colors.append(colorsys.hsv_to_rgb(hue, 0.75 if i % 2 else 0.95, 0.95 if i % 3 else 0.8))
    return [tuple(int(round(min(max(c, 0.0), 1.0) * 255)) for c in color) for color in colors]


def concept_colors(r: int) -> torch.Tensor:
    """r distinct colours [r, 3] float32 in 0-1, each an exact 8-bit value: a picture made of them
    saves (255·x, rounded or truncated, as ComfyUI's image savers do) to concept_colors_u8."""
    u8 = torch.tensor(concept_colors_u8(r), dtype=torch.float32).view(r, 3)
    return torch.where(u8 >= 255, torch.ones_like(u8), (u8 + 0.25) / 255.0)


def color_hex(rgb: tuple[int, int, int]) -> str:
    """'#rrggbb' of an 8-bit colour: how the web extension's legend takes it."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass(frozen=True)
class ColorScale:
    """The score range shown from dark (lo) to bright (hi), one for every map of a SALIENCY.

    Softmax maps are probabilities: the scale is 0 to 1, so equal colours mean equal probability in
    every concept's map and a concept that wins nowhere never looks like one that wins. Maps made
    with softmax off have no fixed range: the scale is their smallest to largest value, over every
    concept, picture and frame together.
    """

    lo: float
    hi: float
    probabilities: bool

    @classmethod
    def of(cls, saliency: SaliencyMaps) -> ColorScale:
        if saliency.softmax:
            return cls(0.0, 1.0, True)
        maps = saliency.maps
        lo, hi = float(maps.min()), float(maps.max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            hi = lo + 1.0 if math.isfinite(lo) else 1.0
            lo = lo if math.isfinite(lo) else 0.0
        return cls(lo, hi, False)

    def unit(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores placed on the scale: 0 at lo, 1 at hi (clamped)."""
        return ((scores.float() - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)

    def tick(self, value: float) -> str:
        """The label of a value at an end of the colour bar."""
        if self.probabilities:
            return f"{value:g}"
        return f"{value:.3g}"


def picture_base(picture: torch.Tensor) -> torch.Tensor:
    """What a heatmap mixes in from the picture [h, w, 3]: its gray levels squeezed into PICTURE_BAND."""
    gray = (picture * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
    return PICTURE_BAND[0] + (PICTURE_BAND[1] - PICTURE_BAND[0]) * gray


def heat_colors(scores: torch.Tensor, scale: ColorScale, base: torch.Tensor | None = None) -> torch.Tensor:
    """Colours [..., h, w, 3] of maps [..., h, w] (already at panel size) on the shared scale, over the
    picture's base (picture_base) when given."""
    heat = colorize(scale.unit(scores))
    if base is None:
        return heat
    return heat * (1.0 - PICTURE_WEIGHT) + base * PICTURE_WEIGHT
