"""From saliency maps to masks: thresholds, upsampling to pixels, grow/shrink, feather, invert.

Order of operations (why: the maps live on a coarse token grid, one value per 16x16-pixel patch on
Flux, so a mask thresholded there has blocky edges):
  1. combine the selected concepts' maps into one score map (sum; see combine_scores);
  2. compute the cut value on the token-level scores (mean, Otsu, value), where the maps' statistics
     are defined; top-percent is the exception: its cut is the quantile of the pixel scores, because
     the percent promises an area of the picture (a token-level quantile applied to upsampled peaky
     maps can cover half the asked-for area);
  3. upsample the *scores* to pixels: bilinear, or guided by the picture so edges follow the image;
  4. compare the pixel scores with the cut;
  5. grow/shrink, feather, invert (invert last, so "grow" always grows the concept's region).
A video's maps (a time axis) give one mask per pixel frame, with one cut per clip (_video_masks).
Pure torch; no ComfyUI import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..checks.errors import ConceptAttentionError
from .image_batch import check_video_frames, match_image_batch, picture_of
from .saliency_maps import SaliencyMaps

MASK_METHODS = ("mean", "otsu", "value", "top_percent", "argmax", "soft")
DEFAULT_MASK_METHOD = "mean"
THRESHOLD_METHODS = ("mean", "otsu", "value", "top_percent", "soft")  # methods on one combined score map
GROW_SHAPES = ("disc", "square")
GUIDED_FILTER_EPS = 1e-3
OTSU_BINS = 256


def _unknown_method(method: object, accepted: Sequence[str]) -> ConceptAttentionError:
    return ConceptAttentionError(f"unknown mask method {method!r}; accepted: {', '.join(accepted)}")


# ---------------------------------------------------------------- token-grid scores and thresholds


def combine_scores(maps: torch.Tensor, selected: Sequence[int]) -> torch.Tensor:
    """Sum the selected concepts' maps: [B, r, h, w] -> [B, h, w].

    Sum, because softmax maps are per-token probabilities over concepts, so the sum is the
    probability that the token belongs to any selected concept (the union's mass). For maps made
    with softmax off the sum is still monotone in each concept's score; thresholds stay meaningful.
    """
    if not selected:
        raise ConceptAttentionError("no concept selected to combine")
    return maps[:, list(selected)].sum(dim=1)


def top_count(percent: float, n: int) -> int:
    """How many of n tokens "the top percent" means: nearest whole count, at least 1, at most n."""
    return min(n, max(1, math.floor(percent * n / 100.0 + 0.5)))


def cut_values(scores: torch.Tensor, method: str, threshold: float = 0.5) -> torch.Tensor:
    """Per-image cut value [B] such that the mask is `score > cut`, from scores [B, h, w].

    mean: the image's mean score (the paper's rule). otsu: the midpoint between the two Otsu classes.
    value: `threshold` itself. top_percent: midway between the k-th and (k+1)-th highest scores
    (k = top_count); scores tied at the cut fall outside, so ties can give fewer than k.
    """
    flat = scores.flatten(1).float()
    if method == "mean":
        return flat.mean(dim=1)
    if method == "otsu":
        return otsu_cuts(flat)
    if method == "value":
        return torch.full((flat.shape[0],), float(threshold), dtype=torch.float32, device=flat.device)
    if method == "top_percent":
        n = flat.shape[1]
        k = top_count(threshold, n)
        ordered = flat.sort(dim=1, descending=True).values
        if k >= n:
            return torch.full((flat.shape[0],), -math.inf, device=flat.device)
        return (ordered[:, k - 1] + ordered[:, k]) / 2
    raise _unknown_method(method, ("mean", "otsu", "value", "top_percent"))


def otsu_cuts(flat: torch.Tensor, bins: int = OTSU_BINS) -> torch.Tensor:
    """Otsu's threshold per row of flat [B, n]: the histogram split maximising between-class variance.

    Returns a cut strictly between the two classes' values so `flat > cut` reproduces the split;
    a constant row has no split and gets a cut equal to its value (empty mask).
    """
    x = flat.double()
    lo = x.min(dim=1, keepdim=True).values
    hi = x.max(dim=1, keepdim=True).values
    norm = (x - lo) / (hi - lo).clamp_min(1e-300)
    idx = (norm * bins).long().clamp(0, bins - 1)
    hist = torch.zeros(x.shape[0], bins, dtype=torch.float64, device=x.device).scatter_add_(1, idx, torch.ones_like(x))
    p = hist / x.shape[1]
    omega = p.cumsum(dim=1)  # weight of the low class (bins <= k)
    centres = (torch.arange(bins, dtype=torch.float64, device=x.device) + 0.5) / bins
    mu = (p * centres).cumsum(dim=1)
    mu_total = mu[:, -1:]
    valid = (omega > 0) & (omega < 1 - 1e-12)
    between = (mu_total * omega - mu) ** 2 / (omega * (1 - omega)).clamp_min(1e-300)
    k = torch.where(valid, between, torch.full_like(between, -1.0)).argmax(dim=1, keepdim=True)  # first max: deterministic
    low = idx <= k
    max_low = torch.where(low, x, torch.full_like(x, -math.inf)).amax(dim=1)
    min_high = torch.where(low, torch.full_like(x, math.inf), x).amin(dim=1)
    cut = torch.where(torch.isinf(min_high), max_low, (max_low + min_high) / 2)
    return cut.float()


def normalize_per_image(scores: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each image's scores to [0, 1]; a constant map becomes all zeros."""
    flat = scores.flatten(1).float()
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-30), torch.zeros_like(flat))
    return out.view_as(scores)


def threshold_masks(scores: torch.Tensor, method: str = DEFAULT_MASK_METHOD, threshold: float = 0.5) -> torch.Tensor:
    """Masks on the token grid from scores [B, h, w] -> [B, h, w] float32.

    mean: score > the image's mean (the paper). otsu: Otsu's split per image. value: score > threshold.
    top_percent: exactly the top `threshold` percent (0-100] of tokens per image (nearest count, at
    least one); ties are broken in raster order (earlier token first), so the result is deterministic.
    soft: continuous, min-max normalised per image to [0, 1]; threshold ignored.
    """
    if scores.ndim != 3:
        raise ConceptAttentionError(f"scores must be [batch, h, w], got shape {tuple(scores.shape)}")
    if method == "soft":
        return normalize_per_image(scores)
    if method == "top_percent":
        flat = scores.flatten(1).float()
        k = top_count(threshold, flat.shape[1])
        order = torch.argsort(flat, dim=1, descending=True, stable=True)
        mask = torch.zeros_like(flat).scatter_(1, order[:, :k], 1.0)
        return mask.view(scores.shape)
    if method not in THRESHOLD_METHODS:
        raise _unknown_method(method, THRESHOLD_METHODS)
    cut = cut_values(scores, method, threshold)
    return (scores.float() > cut.view(-1, 1, 1)).float()


def argmax_masks(maps: torch.Tensor, selected: Sequence[int]) -> torch.Tensor:
    """1 where the winning concept (argmax over ALL concepts) is one of `selected`: [B, r, h, w] -> [B, h, w].

    The paper's multi-class segmentation: every location has exactly one winner (ties go to the
    earlier concept), so the argmax masks of all concepts partition the image.
    """
    if maps.ndim != 4:
        raise ConceptAttentionError(f"maps must be [batch, concepts, h, w], got shape {tuple(maps.shape)}")
    winners = maps.argmax(dim=1)
    chosen = torch.tensor(sorted(set(selected)), dtype=winners.dtype, device=winners.device)
    return torch.isin(winners, chosen).float()


# ---------------------------------------------------------------- upsampling to pixels


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


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize the last two dims of a [B, H, W] or [B, K, H, W] tensor."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = x.unsqueeze(1) if x.ndim == 3 else x
    if mode == "area":
        y = F.interpolate(y, size=size, mode="area")
    else:
        shrinking = size[0] < y.shape[-2] or size[1] < y.shape[-1]
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return y.squeeze(1) if x.ndim == 3 else y


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
    I = _resize(full, small, "area")
    p = _resize(src.double(), small, "area")
    r = max(1, round(radius / s))
    mean_i = box_mean(I, r)
    mean_p = box_mean(p, r)
    cov_ip = box_mean(I * p, r) - mean_i * mean_p
    var_i = box_mean(I * I, r) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a = _resize(box_mean(a, r), (height, width), "bilinear")
    mean_b = _resize(box_mean(b, r), (height, width), "bilinear")
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
    x = _resize(scores.float(), (height, width), "bilinear")
    if guide_image is None:
        return x
    guide = match_image_batch(guide_image, x.shape[0], (height, width), role="guide image").to(x.device)
    r = radius if radius is not None else guide_radius(tuple(scores.shape[-2:]), (height, width))
    return guided_filter(to_gray(guide), x, r, eps, subsample=max(1, r // 4))


# ---------------------------------------------------------------- pixel-level mask edits


def grow_shrink(mask: torch.Tensor, pixels: int, shape: str = "disc") -> torch.Tensor:
    """Grow (pixels > 0, dilation) or shrink (pixels < 0, erosion) mask [B, H, W] by |pixels|.

    Grey-level morphology (max/min over the kernel) so soft masks work too. Pixels outside the
    picture are ignored: growing does not come in from the border and shrinking does not eat it.
    shape: "disc" (round corners) or "square".
    """
    if isinstance(pixels, bool) or not isinstance(pixels, int):
        raise ConceptAttentionError(f"grow must be a whole number of pixels (negative shrinks), got {pixels!r}")
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


def _check_feather(radius: float) -> None:
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius < 0:
        raise ConceptAttentionError(f"feather must be a radius in pixels >= 0 (0 = no feathering), got {radius!r}")


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Gaussian-blur mask [B, H, W] so its edge fades over about `radius` pixels (0 = unchanged).

    sigma = radius/3 with the kernel cut at ±ceil(radius); borders replicate, so values stay in
    the input's range ([0, 1] for masks).
    """
    _check_feather(radius)
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


# saliency_to_mask's parameters are named like these functions (the node's option names)
_feather, _invert = feather, invert


# ---------------------------------------------------------------- the whole pipeline


def _validate_threshold(method: str, threshold: float, softmax: bool) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ConceptAttentionError(f"threshold must be a finite number, got {threshold!r}")
    if method == "top_percent" and not 0 < threshold <= 100:
        raise ConceptAttentionError(
            f"for top_percent the threshold is the percent of the picture to keep: 0 < threshold <= 100, got {threshold}"
        )
    if method == "value" and softmax and not 0 <= threshold <= 1:
        raise ConceptAttentionError(
            f"for value the threshold is compared with the maps, which are softmax probabilities in 0..1; got {threshold}"
        )


def _selected_indices(saliency: SaliencyMaps, concepts: Sequence[str] | str) -> list[int]:
    if isinstance(concepts, str):
        concepts = [concepts]
    names = [c for c in concepts if isinstance(c, str) and c.strip()]
    if len(names) != len(list(concepts)) or not names:
        raise ConceptAttentionError(f"choose one or more concept names (non-empty text); available: {', '.join(saliency.names)}")
    return sorted({saliency.index_of(n) for n in names})


def saliency_to_mask(
    saliency: SaliencyMaps,
    concepts: Sequence[str] | str,
    method: str = DEFAULT_MASK_METHOD,
    threshold: float = 0.5,
    grow: int = 0,
    feather: float = 0.0,
    invert: bool = False,
    guide_image: torch.Tensor | None = None,
    output_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """MASK [B, H, W] float32 in [0, 1] for the chosen concept(s), one per image of the batch; for a
    video, one per pixel frame: [B·F, H, W] (F = saliency.frames, clips one after another, as ComfyUI
    stores video frames; see _video_masks).

    method: one of MASK_METHODS (threshold_masks / argmax_masks explain each); threshold is the
    value for "value" and the percent for "top_percent", ignored otherwise. Several concepts are
    combined by summing their maps (argmax: any of them wins). guide_image (the picture the maps
    were made from; for a video its B·F decoded frames) makes the mask edges follow the image.
    Output size: saliency.image_size unless output_size (height, width) is given.
    """
    if not isinstance(saliency, SaliencyMaps):
        raise ConceptAttentionError(f"expected SALIENCY (SaliencyMaps), got {type(saliency).__name__}")
    if method not in MASK_METHODS:
        raise _unknown_method(method, MASK_METHODS)
    selected = _selected_indices(saliency, concepts)
    _validate_threshold(method, threshold, saliency.softmax)
    if isinstance(grow, bool) or not isinstance(grow, int):
        raise ConceptAttentionError(f"grow must be a whole number of pixels (negative shrinks), got {grow!r}")
    _check_feather(feather)
    maps = saliency.maps.float()
    if not torch.isfinite(maps).all():
        raise ConceptAttentionError("the saliency maps contain NaN or infinite values; recompute them (e.g. in fp32)")

    try:
        size = tuple(int(s) for s in (output_size if output_size is not None else saliency.image_size))
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ConceptAttentionError(f"output size must be two positive numbers (height, width), got {output_size!r}")
    if saliency.is_video:
        return _video_masks(saliency, maps, selected, method, threshold, grow, feather, invert, guide_image, size)
    guide = None
    if guide_image is not None:
        guide = match_image_batch(guide_image, maps.shape[0], saliency.image_size, role="guide image").to(maps.device)
        # the filter runs at the output resolution
        guide = _resize(guide.permute(0, 3, 1, 2), size, "bilinear").permute(0, 2, 3, 1).clamp(0, 1)

    if method == "argmax":
        # upsample every concept's map, then take the winner per pixel: still a partition
        mask = argmax_masks(upsample(maps, size, guide), selected)
    elif method == "soft":
        scores = normalize_per_image(combine_scores(maps, selected))
        mask = upsample(scores, size, guide).clamp(0.0, 1.0)
    else:
        scores = combine_scores(maps, selected)
        pixel_scores = upsample(scores, size, guide)
        # the cut is decided on the token grid, except top_percent's area quantile (see the module doc)
        cut = cut_values(pixel_scores if method == "top_percent" else scores, method, threshold)
        mask = (pixel_scores > cut.view(-1, 1, 1)).float()

    mask = grow_shrink(mask, grow)
    mask = _feather(mask, feather)
    if invert:
        mask = _invert(mask)
    return mask.clamp(0.0, 1.0).to(torch.float32).contiguous()


# ---------------------------------------------------------------- video: one mask per pixel frame

# Score pixels upsampled at once: a long clip is processed a few frames at a time so memory follows
# the output mask, not frames x concepts x pixels (the guided filter holds several float64 copies).
FRAME_CHUNK_PIXELS = 1 << 22


def frames_between(maps: torch.Tensor, before: torch.Tensor, after: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Maps at pixel frames from token frames along dim 0 of maps [T, ...]: linear interpolation,
    [n, ...] for the n entries of before/after/weight (SaliencyMaps.pixel_frame_sources). A weight of
    0 or 1 gives the token frame itself, exactly."""
    w = weight.to(maps.dtype).view(-1, *([1] * (maps.ndim - 1)))
    return torch.lerp(maps[before], maps[after], w)


def _frame_chunks(frames: int, per_frame: int):
    step = max(1, FRAME_CHUNK_PIXELS // max(1, per_frame))
    for start in range(0, frames, step):
        yield start, min(frames, start + step)


def _guide_frames(frames: torch.Tensor, start: int, stop: int, size: tuple[int, int]) -> torch.Tensor:
    """Frames [start, stop) of a checked IMAGE batch as RGB 0-1 at the output size (the filter's resolution)."""
    rgb = torch.stack([picture_of(frames, i) for i in range(start, stop)]).float()
    return _resize(rgb.permute(0, 3, 1, 2), size, "bilinear").permute(0, 2, 3, 1).clamp(0, 1)


def _video_masks(saliency: SaliencyMaps, maps: torch.Tensor, selected: list[int], method: str, threshold: float,
                 grow: int, feather_radius: float, invert_mask: bool, guide_image: torch.Tensor | None,
                 size: tuple[int, int]) -> torch.Tensor:
    """MASK [B·F, H, W] of video maps [B, r, T, h, w]: every pixel frame gets a mask.

    Time: pixel frame f reads the token frames around it, linearly interpolated
    (SaliencyMaps.pixel_frame_sources: first and last pixel frames on the first and last token
    frames), then space as for a picture (bilinear, or guided by that very frame when the decoded
    frames are given).
    Cuts are per clip, not per frame: mean, Otsu and value are decided on the scores of all the clip's
    token frames, top_percent on all its pixel frames (the percent of the clip's area over time), soft
    is normalised over the clip. So one cut holds across the clip: an object that leaves the scene is
    not masked at half strength in the frames it is absent from (a per-frame cut would always mask the
    best half of every frame, even when the concept is nowhere in it), and the mask does not flicker
    as other concepts come and go. argmax needs no cut: the winner is taken per pixel of each frame.
    Grow, feather and invert work on each frame's picture (not across time).
    """
    clips, r, tokens, h, w = maps.shape
    frames = saliency.frames
    height, width = size
    before, after, weight = saliency.pixel_frame_sources()
    guide_frames = None
    if guide_image is not None:
        guide_frames = check_video_frames(guide_image, clips, frames, saliency.image_size, role="guide image")
    out = torch.empty(clips * frames, height, width, dtype=torch.float32)
    per_frame = height * width * (r if method == "argmax" else 1)
    for b in range(clips):
        first = b * frames
        clip = maps[b].transpose(0, 1)  # [T, r, h, w]
        if method == "argmax":
            scores = clip
        else:
            scores = clip[:, selected].sum(dim=1)  # [T, h, w]: combine_scores over the clip
            if method == "soft":
                scores = normalize_per_image(scores.unsqueeze(0))[0]
        cut = None
        if method in ("mean", "otsu", "value"):
            cut = cut_values(scores.unsqueeze(0), method, threshold)[0]
        for start, stop in _frame_chunks(frames, per_frame):
            frame_scores = frames_between(scores, before[start:stop], after[start:stop], weight[start:stop])
            guide = None if guide_frames is None else _guide_frames(guide_frames, first + start, first + stop, size)
            pixels = upsample(frame_scores, size, guide)
            target = out[first + start : first + stop]
            if method == "argmax":
                target.copy_(argmax_masks(pixels, selected))
            elif method == "soft":
                target.copy_(pixels.clamp(0.0, 1.0))
            elif cut is not None:
                target.copy_(pixels > cut)
            else:
                target.copy_(pixels)  # top_percent: the cut needs the whole clip's pixel scores
        if method == "top_percent":
            clip_pixels = out[first : first + frames]
            cut = _top_cut(clip_pixels.view(-1), threshold)
            for start, stop in _frame_chunks(frames, height * width):
                target = clip_pixels[start:stop]
                target.copy_(target > cut)
    for start, stop in _frame_chunks(out.shape[0], height * width):
        target = out[start:stop]
        mask = _feather(grow_shrink(target, grow), feather_radius)
        if invert_mask:
            mask = _invert(mask)
        target.copy_(mask.clamp(0.0, 1.0))
    return out


def _top_cut(flat: torch.Tensor, percent: float) -> float:
    """cut_values' top_percent rule on one long row (midway between the k-th and (k+1)-th highest
    scores) without sorting it: two selections, each costing one copy of the row."""
    n = flat.numel()
    k = top_count(percent, n)
    if k >= n:
        return -math.inf
    kth = torch.kthvalue(flat, n - k + 1).values
    next_kth = torch.kthvalue(flat, n - k).values
    return float((kth + next_kth) / 2)
