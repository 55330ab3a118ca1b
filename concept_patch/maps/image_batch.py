"""Checking that a picture batch belongs to a set of saliency maps.

Masks follow image edges and previews are drawn over the picture, so both need the very image the
maps were made from: same size, and one picture for all maps or one per map.
"""

from __future__ import annotations

import torch

from ..checks.errors import ConceptAttentionError
from .saliency_maps import SaliencyMaps


def check_image_batch(images: torch.Tensor, batch_size: int, image_size: tuple[int, int], role: str = "image") -> torch.Tensor:
    """The checks of match_image_batch without copying anything: images as [B, H, W, C] (a view).

    Use picture_of() to read one picture of the batch; previews work one picture at a time so
    their memory does not grow with the batch's full-resolution size.
    """
    if not isinstance(images, torch.Tensor):
        raise ConceptAttentionError(
            f"the {role} must be an IMAGE tensor [batch, height, width, channels], got {type(images).__name__}"
        )
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ConceptAttentionError(
            f"the {role} must be an IMAGE [batch, height, width, 1/3/4 channels], got shape {tuple(images.shape)}"
        )
    h, w = int(images.shape[1]), int(images.shape[2])
    want_h, want_w = int(image_size[0]), int(image_size[1])
    if (h, w) != (want_h, want_w):
        raise ConceptAttentionError(
            f"the {role} is {w}x{h} (width x height) but the saliency maps were made for {want_w}x{want_h} images; "
            f"pass the image the maps were made from (or resize it to {want_w}x{want_h})"
        )
    if images.shape[0] not in (1, batch_size):
        raise ConceptAttentionError(
            f"the {role} batch has {images.shape[0]} pictures but the saliency maps have {batch_size}; "
            f"pass 1 picture (used for all) or {batch_size}"
        )
    return images


def picture_of(images: torch.Tensor, index: int) -> torch.Tensor:
    """Picture `index` of a checked batch (the only one when the batch has one) as RGB [H, W, 3], a view
    where possible (not clamped: resize first, then clamp, so nothing full-size is copied)."""
    picture = images[index if images.shape[0] > 1 else 0]
    if picture.shape[-1] == 1:
        picture = picture.expand(-1, -1, 3)
    elif picture.shape[-1] == 4:
        picture = picture[..., :3]
    return picture


def match_image_batch(images: torch.Tensor, batch_size: int, image_size: tuple[int, int], role: str = "image") -> torch.Tensor:
    """Return images as float32 RGB [batch_size, H, W, 3], checking they fit maps of image_size.

    images: a ComfyUI IMAGE [B, H, W, C] (C = 1, 3 or 4; alpha is dropped) or a single [H, W, C].
    B must be 1 (shared by every map) or batch_size.
    """
    images = check_image_batch(images, batch_size, image_size, role)
    images = images.float()
    if images.shape[-1] == 1:
        images = images.expand(-1, -1, -1, 3)
    elif images.shape[-1] == 4:
        images = images[..., :3]
    return images.expand(batch_size, -1, -1, -1).clamp(0.0, 1.0)


def check_video_frames(images: torch.Tensor, clips: int, frames: int, image_size: tuple[int, int],
                       role: str = "image") -> torch.Tensor:
    """The frames of a video's saliency maps as a checked IMAGE [clips·frames, H, W, C] (a view).

    ComfyUI stores a decoded video as one IMAGE batch, the clips one after another, so the maps of
    `clips` clips of `frames` pixel frames need exactly clips·frames pictures: a single picture cannot
    guide every frame of a moving scene, and another count means other frames. Read frames with
    picture_of(), a few at a time.
    """
    expected = clips * frames
    images = check_image_batch(images, images.shape[0] if isinstance(images, torch.Tensor) and images.ndim == 4 else 1,
                               image_size, role)
    if images.shape[0] != expected:
        clip_text = f"{clips} clips of {frames} frames" if clips > 1 else f"one clip of {frames} frames"
        raise ConceptAttentionError(
            f"the {role} has {images.shape[0]} frames but the saliency maps are a video of {clip_text} "
            f"({expected} frames); pass the decoded frames the maps were made from (VAE Decode of the same latent)"
        )
    return images


def check_clip_frames(images: torch.Tensor, saliency: SaliencyMaps, role: str = "image") -> torch.Tensor:
    """The pictures of every pixel frame of `saliency`, checked (a view; read with picture_of(images, k)
    for frame k = clip·F + f). Pictures: one picture for all maps or one per map; a video: every
    decoded frame (check_video_frames says why)."""
    if saliency.is_video:
        return check_video_frames(images, saliency.batch_size, saliency.frames, saliency.image_size, role)
    return check_image_batch(images, saliency.batch_size, saliency.image_size, role)
