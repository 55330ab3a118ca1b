"""Node UI payloads: the segmentation view and heatmap panels, plus the legend the web extension draws."""

from __future__ import annotations

import math
import random

from comfy_api.latest import io, ui

from ..concept_patch.maps.captions import readable_width
from ..concept_patch.maps.legend import concept_legend
from ..concept_patch.maps.panels import SheetLayout, sheet_layout
from ..concept_patch.maps.preview import render_preview, video_fps
from ..concept_patch.maps.readout import concept_readout
from ..concept_patch.maps.saliency_maps import SaliencyMaps

PREVIEW_TOOLTIP = (
    "Per picture: the segmentation view (each region in its winning concept's legend colour), then each "
    "concept's map on one colour scale shared by all maps (0-1 for softmax maps), with its colour bar. "
    "Preview-sized (at most 512 px a side). For a video: one sheet of these panels per frame (an IMAGE batch "
    "of clips x frames that Save Animated WEBP or Create Video play)."
)


def saliency_preview(saliency: SaliencyMaps, images, node_cls):
    """(preview IMAGE, ui dict). The preview IMAGE is render_preview's: for pictures the panels
    [B·(r+1), H', W', 3], image-major (panel i·(r+1) is picture i's segmentation view, panel
    i·(r+1) + 1 + j its map of concept j); for a video one sheet per pixel frame [B·F, H', W', 3].
    The node's display shows, per clip (a picture is a clip of one frame), the segmentation view and
    each concept's map cut from it, in that order (the legend's concept buttons pick by position): a
    PNG per picture panel, an animated WebP per video panel. The display and the output are one and
    the same preview-sized tensor: nothing full-size is rendered, whether the output is connected or
    not (a node's cached outputs cannot depend on what is connected). The legend's shares are per clip;
    concept_panel is readable_panel's size."""
    panels = render_preview(saliency, images)
    layout = sheet_layout(saliency)
    prefix = "ConceptAttention_temp_" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
    results = [
        _save_panel(saliency, _panel_frames(panels, layout, clip, k), prefix, node_cls)
        for clip in range(saliency.batch_size)
        for k in range(layout.panels)
    ]
    return panels, {
        "images": results,
        "animated": (saliency.is_video and saliency.frames > 1,),
        "concept_legend": concept_legend(saliency),
        "concept_batch": [saliency.batch_size],
        "concept_segmentation": [True],
        "concept_panel": [readable_panel(layout)],
        "concept_readout": [{**concept_readout(saliency, layout.panel, layout.cell_height),
                             "fps": video_fps(saliency), "tiled": bool(layout.tiled)}],
    }


def readable_panel(layout: SheetLayout) -> list[int]:
    """[width, height] a panel (its strip included) must be shown at for its captions to be readable (at least
    12 px tall on screen: captions.readable_width); the web extension sizes the node for it."""
    width = layout.panel[1]
    shown = readable_width(width)
    return [shown, int(math.ceil((layout.panel[0] + layout.strip) * shown / width))]


def _panel_frames(panels, layout: SheetLayout, clip: int, k: int):
    """Panel k of one clip in every pixel frame, label strip and soundtrack band included: [F, h, w, 3]."""
    sheets = [layout.sheet(clip, frame, k) for frame in range(layout.frames)]
    y, x = layout.box(k)
    return panels[sheets, y : y + layout.cell_height, x : x + layout.panel[1]]


def _save_panel(saliency: SaliencyMaps, frames, prefix: str, node_cls) -> dict:
    """One panel in ComfyUI's temp folder: a PNG for a picture, an animated WebP for a video."""
    if not saliency.is_video:
        return ui.ImageSaveHelper.save_images(frames, filename_prefix=prefix, folder_type=io.FolderType.temp,
                                              cls=node_cls, compress_level=1)[0]
    return ui.ImageSaveHelper.save_animated_webp(
        frames, filename_prefix=prefix, folder_type=io.FolderType.temp, cls=node_cls, fps=video_fps(saliency),
        lossless=True, quality=100, method=0)
