"""Pixel-level mask edits after the cut: grow/shrink, feather, invert.

They work on each picture (each pixel frame of a video) alone, never across pictures or time, so a
mask batch can be edited a few frames at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks.errors import ConceptAttentionError

GROW_SHAPES = ("disc", "square")


def check_grow(pixels: object) -> None:
    """Grow is a whole number of pixels: checked before any work, so a bad value fails fast."""
    if isinstance(pixels, bool) or not isinstance(pixels, int):
        raise ConceptAttentionError(f"grow must be a whole number of pixels (negative shrinks), got {pixels!r}")


def check_feather(radius: object) -> None:
    """Feather is a finite radius >= 0: checked before any work, so a bad value fails fast."""
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius < 0:
        raise ConceptAttentionError(f"feather must be a radius in pixels >= 0 (0 = no feathering), got {radius!r}")


def grow_shrink(mask: torch.Tensor, pixels: int, shape: str = "disc") -> torch.Tensor:
    """Grow (pixels > 0, dilation) or shrink (pixels < 0, erosion) mask [B, H, W] by |pixels|.

    Grey-level morphology (max/min over the kernel) so soft masks work too. Pixels outside the
    picture are ignored: growing does not come in from the border and shrinking does not eat it.
    shape: "disc" (round corners) or "square".
    """
    check_grow(pixels)
    if shape not in GROW_SHAPES:
        raise ConceptAttentionError(f"unknown grow shape {shape!r}; accepted: {', '.join(GROW_SHAPES)}")
    if pixels == 0:
        return mask
    reach = min(abs(pixels), mask.shape[-2] + mask.shape[-1])  # beyond this nothing changes
    dilate = _dilate_disc if shape == "disc" else _dilate_square
    if pixels > 0:
        return dilate(mask, reach)
    return -dilate(-mask, reach)


def _dilate_square(x: torch.Tensor, r: int) -> torch.Tensor:
    # separable max-pool: O(r) per pixel; max_pool2d pads with -inf, i.e. ignores outside pixels
    y = F.max_pool2d(x.unsqueeze(1), kernel_size=(1, 2 * r + 1), stride=1, padding=(0, r))
    y = F.max_pool2d(y, kernel_size=(2 * r + 1, 1), stride=1, padding=(r, 0))
    return y.squeeze(1)


def _max_shifted_into(out: torch.Tensor, x: torch.Tensor, offset: int, dim: int) -> None:
    """out[i] = max(out[i], x[i - offset]) along dim, in place; cells with no source keep out."""
    n = x.shape[dim]
    if abs(offset) >= n:
        return
    if offset >= 0:
        dst, src = out.narrow(dim, offset, n - offset), x.narrow(dim, 0, n - offset)
    else:
        dst, src = out.narrow(dim, 0, n + offset), x.narrow(dim, -offset, n + offset)
    torch.maximum(dst, src, out=dst)


def _dilate_disc(x: torch.Tensor, r: int) -> torch.Tensor:
    # A disc is a stack of horizontal segments; the row max over half-width w+1 is the max of the
    # half-width-w result and its two neighbours, so all widths cost O(r) passes in total.
    half_widths = [math.isqrt(r * r - dy * dy) for dy in range(r + 1)]  # non-increasing in dy
    rows = x.clone()
    width = 0
    out = x.clone()
    for dy in range(r, -1, -1):
        while width < half_widths[dy]:
            previous = rows.clone()
            _max_shifted_into(rows, previous, 1, -1)
            _max_shifted_into(rows, previous, -1, -1)
            width += 1
        _max_shifted_into(out, rows, dy, -2)
        _max_shifted_into(out, rows, -dy, -2)
    return out


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Gaussian-blur mask [B, H, W] so its edge fades over about `radius` pixels (0 = unchanged).

    sigma = radius/3 with the kernel cut at ±ceil(radius); borders replicate, so values stay in
    the input's range ([0, 1] for masks).
    """
    check_feather(radius)
    if radius == 0:
        return mask
    k = math.ceil(radius)
    sigma = radius / 3.0
    offsets = torch.arange(-k, k + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets**2) / (2 * sigma * sigma))
    kernel = (kernel / kernel.sum()).to(mask.dtype).to(mask.device)
    x = mask.unsqueeze(1)
    x = F.conv2d(F.pad(x, (k, k, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, k, k), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x.squeeze(1).clamp(mask.min().item(), mask.max().item())


def invert(mask: torch.Tensor) -> torch.Tensor:
    """1 - mask."""
    return 1.0 - mask


def edit_masks(mask: torch.Tensor, grow: int, feather_radius: float, invert_mask: bool) -> torch.Tensor:
    """Grow/shrink, then feather, then invert (last, so "grow" always grows the concept's region),
    clamped to 0-1: the order the Saliency to Mask node promises."""
    mask = feather(grow_shrink(mask, grow), feather_radius)
    if invert_mask:
        mask = invert(mask)
    return mask.clamp(0.0, 1.0)
