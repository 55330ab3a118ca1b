"""Resampling of maps, in space and in time: the one module masks and heatmaps both use, so a mask
and the heatmap drawn of the same map sit on exactly the same pixels.

Space: bilinear upsampling (half-pixel centres), optionally snapped to the picture's edges by a
guided filter. Time: linear interpolation between token frames (frames_between). Pure torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks.errors import ConceptAttentionError
from .image_batch import match_image_batch

GUIDED_FILTER_EPS = 1e-3
# Score pixels resampled at once: a long clip is processed a few frames at a time so memory follows
# the output, not frames x concepts x pixels (the guided filter holds several float64 copies).
FRAME_CHUNK_PIXELS = 1 << 22


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2·radius+1)² window of the last two dims of x, windows clipped at the borders
    (cumulative sums: O(1) per pixel whatever the radius)."""
    return _box_mean_1d(_box_mean_1d(x, radius, dim=-1), radius, dim=-2)


def _box_mean_1d(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    # window sum = difference of two cumulative sums; padding the cumsum with its edge values
    # clips the windows at the borders, and dividing by the true count gives their mean
    n = x.shape[dim]
    csum = x.cumsum(dim=dim)
    zeros = torch.zeros_like(csum.narrow(dim, 0, 1)).repeat_interleave(radius + 1, dim=dim)
    ends = csum.narrow(dim, n - 1, 1).repeat_interleave(radius, dim=dim)
    padded = torch.cat([zeros, csum, ends], dim=dim)
    sums = padded.narrow(dim, 2 * radius + 1, n) - padded.narrow(dim, 0, n)
    idx = torch.arange(n, device=x.device)
    count = (idx + radius).clamp(max=n - 1) - (idx - radius).clamp(min=0) + 1
    count_shape = [1] * x.ndim
    count_shape[dim] = n
    return sums / count.to(x.dtype).view(count_shape)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize the last two dims of a [B, H, W] or [B, K, H, W] tensor ("area", or bilinear with
    antialiasing when shrinking, so a shrunk map averages its pixels instead of skipping some)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = x.unsqueeze(1) if x.ndim == 3 else x
    if mode == "area":
        y = F.interpolate(y, size=size, mode="area")
    else:
        shrinking = size[0] < y.shape[-2] or size[1] < y.shape[-1]
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return y.squeeze(1) if x.ndim == 3 else y


def resize_pictures(pictures: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """RGB pictures [N, H, W, 3] -> [N, h, w, 3] float32 in 0-1 (bilinear, area-averaged when shrinking).
    Clamped after resizing only, so a full-size picture is never copied (a view goes in)."""
    x = pictures.float().permute(0, 3, 1, 2)
    return resize(x, size, "bilinear").permute(0, 2, 3, 1).clamp(0.0, 1.0)


def guided_filter(
    guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float = GUIDED_FILTER_EPS, subsample: int = 1
) -> torch.Tensor:
    """He et al.'s guided filter: src smoothed so its edges follow guide (gray, 0-1).

    guide [B, H, W]; src [B, H, W] or [B, K, H, W] (K maps sharing one guide). Locally the output
    is a·guide + b, so where the picture has an edge the scores get one too. subsample > 1 is the
    fast guided filter (He & Sun 2015): a and b are smooth, so they are computed on a grid
    `subsample` times coarser and upsampled; only the final a·guide + b uses full resolution.
    float64 because box sums over large images lose precision in float32.
    """
    full = guide.double()
    if src.ndim == 4:
        full = full.unsqueeze(1)
    height, width = src.shape[-2:]
    s = max(1, int(subsample))
    small = (max(1, math.ceil(height / s)), max(1, math.ceil(width / s)))
    small_guide = resize(full, small, "area")
    p = resize(src.double(), small, "area")
    r = max(1, round(radius / s))
    mean_i = box_mean(small_guide, r)
    mean_p = box_mean(p, r)
    cov_ip = box_mean(small_guide * p, r) - mean_i * mean_p
    var_i = box_mean(small_guide * small_guide, r) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a = resize(box_mean(a, r), (height, width), "bilinear")
    mean_b = resize(box_mean(b, r), (height, width), "bilinear")
    return (mean_a * full + mean_b).to(src.dtype)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB batch [B, H, W, 3] -> [B, H, W] (Rec. 601 weights)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return (images[..., :3] * weights).sum(dim=-1)


def guide_radius(grid: tuple[int, int], size: tuple[int, int]) -> int:
    """Guided-filter radius: one patch (the token grid's cell size in pixels), so each window sees
    a whole cell's worth of picture when deciding where the edge lies inside it."""
    cell = max(size[0] / max(grid[0], 1), size[1] / max(grid[1], 1))
    return max(1, round(cell))


def upsample(
    scores: torch.Tensor,
    size: tuple[int, int],
    guide_image: torch.Tensor | None = None,
    radius: int | None = None,
    eps: float = GUIDED_FILTER_EPS,
) -> torch.Tensor:
    """Upsample scores [B, h, w] (or [B, K, h, w]: K maps per image) to pixels [B, (K,) H, W].

    Without a guide: bilinear (half-pixel centres). With guide_image (IMAGE [B or 1, H, W, 3], 0-1,
    already at `size`): bilinear, then a guided filter on the picture's gray levels so score edges
    snap to image edges; radius defaults to one token cell (guide_radius), eps to 1e-3, and the
    filter's coefficients are computed at a quarter of the radius' resolution (fast guided filter).
    Threshold the result afterwards; thresholding before would leave token-sized steps.
    """
    if scores.ndim not in (3, 4):
        raise ConceptAttentionError(f"scores must be [batch, h, w] or [batch, maps, h, w], got shape {tuple(scores.shape)}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ConceptAttentionError(f"output size must be positive (height, width), got {tuple(size)}")
    x = resize(scores.float(), (height, width), "bilinear")
    if guide_image is None:
        return x
    guide = match_image_batch(guide_image, x.shape[0], (height, width), role="guide image").to(x.device)
    r = radius if radius is not None else guide_radius(tuple(scores.shape[-2:]), (height, width))
    return guided_filter(to_gray(guide), x, r, eps, subsample=max(1, r // 4))


def frames_between(maps: torch.Tensor, before: torch.Tensor, after: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Maps at pixel frames from token frames along dim 0 of maps [T, ...]: linear interpolation,
    [n, ...] for the n entries of before/after/weight (SaliencyMaps.pixel_frame_sources). A weight of
    0 or 1 gives the token frame itself, exactly (so a picture, one frame, passes through unchanged)."""
    w = weight.to(maps.dtype).view(-1, *([1] * (maps.ndim - 1)))
    return torch.lerp(maps[before], maps[after], w)


def frame_chunks(frames: int, per_frame: int, budget: int = FRAME_CHUNK_PIXELS):
    """(start, stop) ranges of frames, each holding about `budget` pixels (at least one frame):
    how long clips are resampled without holding all their frames at full size."""
    step = max(1, budget // max(1, per_frame))
    for start in range(0, frames, step):
        yield start, min(frames, start + step)
