"""Views of a preview that only the tests need, written with the product's public functions: the
heatmap panels alone, the segmentation view at any size, one map as a PNG, per-map normalising."""

from __future__ import annotations

import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.files.pictures import image_to_png_bytes
from concept_attention.concept_patch.maps.colors import ColorScale, colorize, concept_colors
from concept_attention.concept_patch.maps.preview import nearest_token_frames, render_preview, winners_at
from concept_attention.concept_patch.maps.resample import upsample
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention.concept_patch.maps.thresholds import normalize_per_image


def overlay_maps(saliency: SaliencyMaps, images: torch.Tensor | None = None, labels: bool = True) -> torch.Tensor:
    """The heatmap panels of render_preview alone: [B·r, H', W', 3], image-major (pictures only)."""
    if saliency.is_video:
        raise ConceptAttentionError("overlay_maps takes picture maps; for a video use render_preview (one sheet per frame)")
    panels = render_preview(saliency, images, labels=labels)
    r = len(saliency.names)
    keep = [k for k in range(panels.shape[0]) if k % (r + 1) != 0]
    return panels[keep]


def segmentation_preview(saliency: SaliencyMaps, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Each token in the colour of its winning concept (the legend's colours): [B·F, H, W, 3] at size
    (default: the picture size), each pixel frame showing its nearest token frame (pictures: [B, H, W, 3])."""
    size = tuple(int(s) for s in (size or saliency.image_size))
    clips = saliency.clips.detach().float().cpu()
    r = clips.shape[1]
    maps = clips[:, :, nearest_token_frames(saliency)].transpose(1, 2).reshape(-1, r, *saliency.grid)
    return concept_colors(r)[winners_at(maps, size)]


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map [..., h, w] to [0, 1]; a constant map becomes 0."""
    return normalize_per_image(maps.float().reshape(-1, *maps.shape[-2:])).view(maps.shape)


def heatmap_png_bytes(scores: torch.Tensor, size: tuple[int, int] | None = None,
                      scale: ColorScale | None = None) -> bytes:
    """PNG bytes of one map [h, w] coloured on `scale` (default: the map's own range), resized to size (H, W)."""
    if scores.ndim != 2:
        raise ConceptAttentionError(f"a heatmap needs one map [h, w], got shape {tuple(scores.shape)}")
    m = scores.detach().float().cpu().unsqueeze(0)
    m = scale.unit(m) if scale is not None else normalize_maps(m)
    if size is not None:
        m = upsample(m, size)
    return image_to_png_bytes(colorize(m[0]))
