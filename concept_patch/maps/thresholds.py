"""Cuts: where a score map becomes a mask (mean, Otsu, value, top percent), and the argmax partition.

The cut is decided on a whole picture's (or clip's) scores, so these functions work per row of a
batch [B, ...]; the mask pipeline (masks.py) decides which scores a cut sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..checks.errors import ConceptAttentionError

# mean: above the map's mean where the concepts are present (presence.py), else empty; relative_mean: above
# the mean whatever the picture shows (the paper's rule: always about half the map).
MASK_METHODS = ("mean", "relative_mean", "otsu", "value", "top_percent", "argmax", "soft")
# The methods that read the threshold input (the others ignore it; the node shows it only for these).
METHODS_READING_THRESHOLD = ("value", "top_percent")
DEFAULT_MASK_METHOD = "mean"
THRESHOLD_METHODS = ("mean", "relative_mean", "otsu", "value", "top_percent", "soft")  # methods on one combined score map
OTSU_BINS = 256


def unknown_method(method: object, accepted: Sequence[str]) -> ConceptAttentionError:
    """The error for a mask method that is not one of `accepted` (it lists them, so the user can pick)."""
    return ConceptAttentionError(f"unknown mask method {method!r}; accepted: {', '.join(accepted)}")


def combine_scores(maps: torch.Tensor, selected: Sequence[int]) -> torch.Tensor:
    """Sum the selected concepts' maps: [B, r, ...] -> [B, ...].

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
    """Per-image cut value [B] such that the mask is `score > cut`, from scores [B, ...].

    mean: the image's mean score (the paper's rule). otsu: the midpoint between the two Otsu classes.
    value: `threshold` itself. top_percent: midway between the k-th and (k+1)-th highest scores
    (k = top_count); scores tied at the cut fall outside, so ties can give fewer than k.
    """
    flat = scores.flatten(1).float()
    if method in ("mean", "relative_mean"):  # the same cut; "mean" also empties absent concepts' masks (masks.py)
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
    raise unknown_method(method, ("mean", "relative_mean", "otsu", "value", "top_percent"))


def top_cut(flat: torch.Tensor, percent: float) -> float:
    """cut_values' top_percent rule on one long row (midway between the k-th and (k+1)-th highest
    scores) without sorting it: two selections, each costing one copy of the row (a clip's pixel
    scores can be far too many to sort)."""
    n = flat.numel()
    k = top_count(percent, n)
    if k >= n:
        return -math.inf
    kth = torch.kthvalue(flat, n - k + 1).values
    next_kth = torch.kthvalue(flat, n - k).values
    return float((kth + next_kth) / 2)


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
    """Min-max normalise each image's scores [B, ...] to [0, 1]; a constant map becomes all zeros."""
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
        raise unknown_method(method, THRESHOLD_METHODS)
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
