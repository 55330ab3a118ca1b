"""Node UI payloads: heatmap panels plus the legend the web extension draws."""

from __future__ import annotations

from comfy_api.latest import ui

from ..concept_patch.heatmap import overlay_maps
from ..concept_patch.legend import concept_legend
from ..concept_patch.saliency_maps import SaliencyMaps


def saliency_preview(saliency: SaliencyMaps, images, node_cls):
    """(preview IMAGE [B·r, H, W, 3], ui dict). Panels are image-major: panel i·r + j is concept j of image i."""
    panels = overlay_maps(saliency, images)
    payload = ui.PreviewImage(panels, cls=node_cls).as_dict()
    payload["concept_legend"] = concept_legend(saliency)
    payload["concept_batch"] = [saliency.batch_size]
    return panels, payload
