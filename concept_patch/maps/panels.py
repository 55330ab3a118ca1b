"""Where preview panels go and how large they are: a pixel budget for all of them together.

A preview has, for every pixel frame of every clip, r+1 panels (the segmentation view, then each
concept's heatmap), each a map area with a label strip below. A picture's panels are separate images
(the node shows them side by side); a video's panels of one frame are tiled on one sheet, so the
preview is one image per pixel frame that ComfyUI's animated-image and video savers play.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..checks.errors import ConceptAttentionError
from .captions import strip_height
from .panel_captions import PreviewCaptions
from .saliency_maps import SaliencyMaps
from .soundtrack_band import band_height, shows_soundtrack

# Previews: every panel together holds at most PREVIEW_PIXEL_BUDGET pixels and no panel side is
# longer than PREVIEW_MAX_SIDE, whatever the picture's size or the concept count (64 concepts of a
# 4096² picture cost what a preview needs, not 64 full-size pictures).
PREVIEW_MAX_SIDE = 512
PREVIEW_MIN_SIDE = 96
PREVIEW_PIXEL_BUDGET = 8_000_000
# Save Saliency's heatmap files: larger panels, the same kind of budget.
FILE_MAX_SIDE = 1024
FILE_PIXEL_BUDGET = 16_000_000
# A video's panels may shrink to VIDEO_PREVIEW_MIN_SIDE (its frames share the budget), and their
# label strips are left out below LABEL_MIN_WIDTH (the text would not fit). A clip that needs more
# than the budget even then is refused with a message (over 30 000 panel-frames: e.g. 257 frames of
# more than 120 concepts).
VIDEO_PREVIEW_MIN_SIDE = 16
LABEL_MIN_WIDTH = 96


def panel_size(image_size: tuple[int, int], panels: int, max_side: int = PREVIEW_MAX_SIDE,
               budget: int = PREVIEW_PIXEL_BUDGET, min_side: int = PREVIEW_MIN_SIDE,
               upscale: bool = True) -> tuple[int, int]:
    """(height, width) of one preview panel's map: the picture's aspect ratio, its longer side
    max_side, smaller when `panels` panels would exceed `budget` pixels together; never below
    min_side on the longer side. upscale=False: never larger than the picture either."""
    h, w = max(1, int(image_size[0])), max(1, int(image_size[1]))
    long_side = float(max_side if upscale else min(max_side, max(h, w)))
    min_side = min_side if upscale else min(min_side, max(h, w))
    area = long_side * long_side * min(h, w) / max(h, w)
    if area * max(1, panels) > budget:
        long_side *= math.sqrt(budget / (area * max(1, panels)))
    long_side = max(float(min_side), long_side)
    if h >= w:
        return int(round(long_side)), max(1, int(round(long_side * w / h)))
    return max(1, int(round(long_side * h / w))), int(round(long_side))


@dataclass(frozen=True)
class SheetLayout:
    """Where the panels of a preview sit. Panel k of a frame (0 = segmentation view, 1 + j = concept j)
    lies on image sheet(clip, frame, k) with its cell's top-left corner at box(k); each cell is the
    map area (panel) with its label strip below. tiled: a video's r+1 panels share one sheet per
    frame, in row k // cols, column k % cols; otherwise (pictures) every panel is its own image."""

    panel: tuple[int, int]
    strip: int
    rows: int
    cols: int
    panels: int
    clips: int = 1
    frames: int = 1
    tiled: bool = True
    band: int = 0  # rows of the soundtrack band under the label strip (soundtrack_band.py), 0 without one

    @property
    def cell_height(self) -> int:
        return self.panel[0] + self.strip + self.band

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows * self.cell_height, self.cols * self.panel[1]

    @property
    def sheets(self) -> int:
        """How many images the preview has: clips·frames sheets, or clips·(r+1) panels."""
        return self.clips * self.frames * (1 if self.tiled else self.panels)

    def sheet(self, clip: int, frame: int, k: int) -> int:
        """Index of the image that holds panel k of pixel frame `frame` of clip `clip`."""
        index = clip * self.frames + frame
        return index if self.tiled else index * self.panels + k

    def box(self, k: int) -> tuple[int, int]:
        """Top-left corner (y, x) of panel k's cell on its sheet."""
        slot = k if self.tiled else 0
        return (slot // self.cols) * self.cell_height, (slot % self.cols) * self.panel[1]


def sheet_layout(saliency: SaliencyMaps, labels: bool = True, max_side: int = PREVIEW_MAX_SIDE,
                 budget: int = PREVIEW_PIXEL_BUDGET, captions: PreviewCaptions | None = None) -> SheetLayout:
    """The layout of a SALIENCY's preview: every panel of every frame within `budget` pixels together.

    Panels start at panel_size and shrink until the cells, strips included, fit the budget: pictures
    in steps of 8 px down to PREVIEW_MIN_SIDE (then shown even over budget: a picture batch is never
    refused), a video's many frames in steps of 1/16 down to VIDEO_PREVIEW_MIN_SIDE, then refused.
    """
    video = saliency.is_video
    panels = len(saliency.names) + 1
    cols = math.ceil(math.sqrt(panels)) if video else 1
    rows = math.ceil(panels / cols) if video else 1
    cells = saliency.batch_size * saliency.clip_frames * (rows * cols if video else panels)
    image_size = tuple(int(s) for s in saliency.image_size)
    min_side = VIDEO_PREVIEW_MIN_SIDE if video else PREVIEW_MIN_SIDE
    label_min_width = LABEL_MIN_WIDTH if video else 0
    captions = (captions or PreviewCaptions(saliency)) if labels else None

    banded = shows_soundtrack(saliency)

    def strip_for(size):  # what a panel has under it: its caption strip, then the soundtrack band where there is one
        label = 0 if captions is None or size[1] < label_min_width else strip_height(size[1], captions.lines(size[1]))
        return label + (band_height(size) if banded else 0)

    size = panel_size(image_size, cells, max_side, budget, min_side=min_side)
    strip = strip_for(size)
    while (size[0] + strip) * size[1] * cells > budget and max(size) > min_side:
        step = max(1, max(size) // 16) if video else 8
        size = panel_size(image_size, cells, max(min_side, max(size) - step), budget, min_side=min_side)
        strip = strip_for(size)
    if video and (size[0] + strip) * size[1] * cells > budget:
        raise ConceptAttentionError(
            f"a preview of {saliency.batch_size * saliency.frames} frames with {panels} panels each needs more "
            f"than {budget} pixels even with {VIDEO_PREVIEW_MIN_SIDE}-pixel panels; preview fewer concepts or a "
            "shorter clip"
        )
    band = band_height(size) if banded else 0
    return SheetLayout(size, strip - band, rows, cols, panels, saliency.batch_size,
                       saliency.clip_frames, tiled=video, band=band)
