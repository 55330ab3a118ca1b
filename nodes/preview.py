"""Node UI payloads: the segmentation view and heatmap panels, plus the legend the web extension draws."""

from __future__ import annotations

import random

from comfy_api.latest import io, ui

from ..concept_patch.maps.heatmap import render_preview, sheet_layout, video_fps
from ..concept_patch.maps.legend import concept_legend
from ..concept_patch.maps.saliency_maps import SaliencyMaps

PREVIEW_TOOLTIP = (
    "Per picture: the segmentation view (each region in its winning concept's legend colour), then each "
    "concept's map on one colour scale shared by all maps (0-1 for softmax maps), with its colour bar. "
    "Preview-sized (at most 512 px a side). For a video: one sheet of these panels per frame (an IMAGE batch "
    "of clips x frames that Save Animated WEBP or Create Video play)."
)


def saliency_preview(saliency: SaliencyMaps, images, node_cls):
    """(preview IMAGE [B·(r+1), H', W', 3], ui dict), image-major: panel i·(r+1) is picture i's
    segmentation view, panel i·(r+1) + 1 + j its map of concept j. The node's display and the
    preview output are one and the same preview-sized tensor: nothing full-size is rendered, whether
    the output is connected or not (a node's cached outputs cannot depend on what is connected).
    A video: the preview IMAGE is one sheet per pixel frame [B·F, H', W', 3] (render_video_preview),
    the display its panels animated, the legend's shares per clip."""
    panels = render_preview(saliency, images)
    if saliency.is_video:
        payload = _video_payload(saliency, panels, node_cls)
    else:
        payload = ui.PreviewImage(panels, cls=node_cls).as_dict()
    payload["concept_legend"] = concept_legend(saliency)
    payload["concept_batch"] = [saliency.batch_size]
    payload["concept_segmentation"] = [True]
    return panels, payload


def _video_payload(saliency: SaliencyMaps, sheets, node_cls) -> dict:
    """The node's display of a video's preview: per clip, the segmentation view and each concept's map
    as animated images, cut from the sheets (the same clip-major, segmentation-first order as a
    picture's panels, so the legend's concept buttons pick the right one); shares are per clip."""
    layout = sheet_layout(saliency)
    frames = saliency.frames
    prefix = "ConceptAttention_temp_" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
    results = []
    for clip in range(saliency.batch_size):
        clip_sheets = sheets[clip * frames : (clip + 1) * frames]
        for k in range(layout.panels):
            y, x = layout.box(k)
            panel = clip_sheets[:, y : y + layout.panel[0] + layout.strip, x : x + layout.panel[1]]
            results.append(ui.ImageSaveHelper.save_animated_webp(
                panel, filename_prefix=prefix, folder_type=io.FolderType.temp, cls=node_cls,
                fps=video_fps(saliency), lossless=True, quality=100, method=0))
    return {"images": results, "animated": (frames > 1,)}
