"""Picture files of heatmaps: a PNG for a picture's map, a lossless looping animated WebP for a
video's (a frame per pixel frame, so the colours stay exactly the scale's)."""

from __future__ import annotations

import io

import torch
from PIL import Image

from ..maps.colors import ColorScale
from ..maps.preview import heatmap_frames, video_fps
from ..maps.saliency_maps import SaliencyMaps


def _to_u8_pictures(frames: torch.Tensor) -> list[Image.Image]:
    array = (frames.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    return [Image.fromarray(a) for a in array]


def image_to_png_bytes(image: torch.Tensor) -> bytes:
    """PNG bytes of one picture [H, W, 3] float 0-1."""
    buffer = io.BytesIO()
    _to_u8_pictures(image[None])[0].save(buffer, format="PNG")
    return buffer.getvalue()


def heatmap_extension(saliency: SaliencyMaps) -> str:
    """The heatmap files' kind: '.png' for pictures, '.webp' (animated) for a video."""
    return ".webp" if saliency.is_video else ".png"


def heatmap_file_bytes(saliency: SaliencyMaps, clip: int, concept: int, size: tuple[int, int],
                       scale: ColorScale | None = None) -> bytes:
    """The bytes of one concept's heatmap file of one clip (a picture is a clip of one frame), on
    `scale` (default: ColorScale.of(saliency)) at size (H, W); a file of heatmap_extension's kind.
    Frames are coloured a few at a time; only the 8-bit frames are held."""
    pictures = []
    for frames in heatmap_frames(saliency, clip, concept, size, scale):
        pictures += _to_u8_pictures(frames)
        del frames  # else this chunk's float frames live on while the next chunk is coloured
    buffer = io.BytesIO()
    if not saliency.is_video:
        pictures[0].save(buffer, format="PNG")
    else:
        pictures[0].save(buffer, format="WEBP", save_all=True, append_images=pictures[1:],
                         duration=int(round(1000.0 / video_fps(saliency))), loop=0, lossless=True, method=0)
    return buffer.getvalue()
