"""The preview of a SALIENCY: for every pixel frame, the segmentation view and each concept's heatmap.

A picture is a clip of one frame, so pictures and video go through one renderer; only where the
panels land differs (panels.SheetLayout). Everything returns float32 CPU tensors in ComfyUI's IMAGE
layout [N, H, W, 3], 0-1.
"""

from __future__ import annotations

import math

import torch

from .colors import ColorScale, colorize, concept_colors, heat_colors, picture_base
from .image_batch import check_clip_frames, picture_of
from .labels import STRIP_BACKGROUND, heatmap_strip, segmentation_strip
from .panel_captions import PreviewCaptions, nearest_token_frames
from .panels import PREVIEW_MAX_SIDE, PREVIEW_PIXEL_BUDGET, sheet_layout
from .resample import frame_chunks, frames_between, resize_pictures, upsample
from .saliency_maps import SaliencyMaps
from .soundtrack_band import draw_soundtracks

DEFAULT_VIDEO_FPS = 8.0
# Heatmap pixels coloured at once for a file (colouring holds about 50 bytes a pixel).
HEATMAP_CHUNK_PIXELS = 1 << 20


def winners_at(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Winning concept of every pixel [B, H, W] (long) of maps [B, r, h, w], each pixel taking its
    token's winner (nearest token: the segmentation view shows tokens, as the legend's shares count them)."""
    winners = maps.argmax(dim=1)
    h, w = winners.shape[-2:]
    rows = torch.div(torch.arange(size[0]) * h, size[0], rounding_mode="floor")
    cols = torch.div(torch.arange(size[1]) * w, size[1], rounding_mode="floor")
    return winners[:, rows][:, :, cols]


def video_fps(saliency: SaliencyMaps) -> float:
    """Frame rate for animated previews: the maps' metadata 'fps' when it is a sensible number, else 8."""
    fps = saliency.metadata.get("fps") if isinstance(saliency.metadata, dict) else None
    if isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and 0 < fps <= 240:
        return float(fps)
    return DEFAULT_VIDEO_FPS


def render_preview(saliency: SaliencyMaps, images: torch.Tensor | None = None, labels: bool = True,
                   max_side: int = PREVIEW_MAX_SIDE, budget: int = PREVIEW_PIXEL_BUDGET) -> torch.Tensor:
    """The preview images of a SALIENCY, laid out by sheet_layout.

    Pictures: [B·(r+1), H', W', 3], image-major (panel i·(r+1) is picture i's segmentation view,
    panel i·(r+1) + 1 + j its map of concept j). A video: one sheet per pixel frame [B·F, H', W', 3],
    clips one after another, the r+1 panels tiled on it.

    Segmentation view: each token in the colour of its winning concept (argmax over concepts, the
    paper's multi-class view; for a video the nearest token frame), in exactly the legend's colours.
    Heatmaps: inferno on one scale shared by every map of every frame (ColorScale), interpolated in
    time as the masks are, over a faint gray copy of the picture (of that very frame) when given.
    labels: a strip under each panel with the concept's name (wrapped, never cut short up to three lines) and the
    colour bar (heatmaps), or the key of the segmentation view: the colour and name of every concept it colours;
    a batch's pictures and a video's frames are numbered there. Panels are preview-sized and built one frame and one
    concept at a time: memory is the preview plus one frame's maps, whatever the picture's size.
    A clip with a soundtrack (MiniMax H3's audio shares) has its soundtrack band under every panel
    (soundtrack_band.py).
    """
    captions = PreviewCaptions(saliency) if labels else None
    layout = sheet_layout(saliency, labels, max_side, budget, captions)
    size, strip = layout.panel, layout.strip
    pictures = None if images is None else check_clip_frames(images, saliency, role="image")
    scale = ColorScale.of(saliency)
    maps = saliency.clips.detach().float().cpu()
    before, after, weight = saliency.pixel_frame_sources()
    nearest = nearest_token_frames(saliency)
    background = torch.tensor(STRIP_BACKGROUND, dtype=torch.float32) / 255.0
    out = background.expand(layout.sheets, *layout.shape, 3).clone()
    colors = concept_colors(len(saliency.names))
    strips = {}
    heat_lines = captions.heat_lines(size[1]) if strip else []

    def cell(clip, frame, k):
        y, x = layout.box(k)
        return out[layout.sheet(clip, frame, k), y : y + size[0] + strip, x : x + size[1]]

    def strip_of(make, *args):
        key = (make, *args)
        if key not in strips:
            strips[key] = make(size[1], strip, *args)
        return strips[key]

    for i in range(saliency.batch_size):
        clip = maps[i].transpose(0, 1)  # [T, r, h, w]
        for f in range(saliency.clip_frames):
            k = i * saliency.clip_frames + f
            panel_maps = upsample(frames_between(clip, before[f : f + 1], after[f : f + 1], weight[f : f + 1]), size)[0]
            base = None if pictures is None else picture_base(resize_pictures(picture_of(pictures, k)[None], size)[0])
            seg = cell(i, f, 0)
            seg[: size[0]] = colors[winners_at(clip[nearest[f]].unsqueeze(0), size)[0]]
            number = captions.number(i, f) if strip else ""
            heat_number = "" if saliency.is_video else number  # a video numbers its frames once, under the key
            if strip:
                key = tuple(tuple(line) for line in captions.key(size[1], i))
                seg[size[0] :] = strip_of(segmentation_strip, key, len(saliency.names), number)
            for j in range(len(saliency.names)):
                panel = cell(i, f, 1 + j)
                panel[: size[0]] = heat_colors(panel_maps[j], scale, base)
                if strip:
                    panel[size[0] :] = strip_of(heatmap_strip, tuple(heat_lines[j]), scale, heat_number)
    draw_soundtracks(out, saliency, layout)
    return out


def heatmap_frames(saliency: SaliencyMaps, clip: int, concept: int, size: tuple[int, int],
                   scale: ColorScale | None = None):
    """One concept's map over one clip, coloured on `scale` (default: ColorScale.of(saliency)) at
    size (H, W): yields [n, H, W, 3] float 0-1 a few pixel frames at a time (one for a picture),
    interpolated in time as the masks are, so a long clip is never coloured all at once."""
    scale = scale or ColorScale.of(saliency)
    maps = saliency.clips[clip, concept].detach().float().cpu()  # [T, h, w]
    before, after, weight = saliency.pixel_frame_sources()
    for start, stop in frame_chunks(len(before), size[0] * size[1], HEATMAP_CHUNK_PIXELS):
        scores = frames_between(maps, before[start:stop], after[start:stop], weight[start:stop])
        yield colorize(upsample(scale.unit(scores), size))
