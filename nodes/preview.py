"""Node UI payloads: the segmentation view and heatmap panels, plus the legend the web extension draws."""

from __future__ import annotations

from comfy_api.latest import ui

from ..concept_patch.heatmap import render_preview
from ..concept_patch.legend import concept_legend
from ..concept_patch.saliency_maps import SaliencyMaps

PREVIEW_TOOLTIP = (
    "Per picture: the segmentation view (each region in its winning concept's legend colour), then each "
    "concept's map on one colour scale shared by all maps (0-1 for softmax maps), with its colour bar. "
    "Preview-sized (at most 512 px a side)."
)


def saliency_preview(saliency: SaliencyMaps, images, node_cls):
    """(preview IMAGE [B·(r+1), H', W', 3], ui dict), image-major: panel i·(r+1) is picture i's
    segmentation view, panel i·(r+1) + 1 + j its map of concept j. The node's display and the
    preview output are one and the same preview-sized tensor: nothing full-size is rendered, whether
    the output is connected or not (a node's cached outputs cannot depend on what is connected)."""
    panels = render_preview(saliency, images)
    payload = ui.PreviewImage(panels, cls=node_cls).as_dict()
    payload["concept_legend"] = concept_legend(saliency)
    payload["concept_batch"] = [saliency.batch_size]
    payload["concept_segmentation"] = [True]
    return panels, payload
