"""From saliency maps to masks: the pipeline of the Saliency to Mask node.

Order of operations (why: the maps live on a coarse token grid, one value per 16x16-pixel patch on
Flux, so a mask thresholded there has blocky edges):
  1. combine the selected concepts' maps into one score map (sum; see thresholds.combine_scores);
  2. compute the cut value on the token-level scores (mean, Otsu, value), where the maps' statistics
     are defined; top-percent is the exception: its cut is the quantile of the pixel scores, because
     the percent promises an area of the picture (a token-level quantile applied to upsampled peaky
     maps can cover half the asked-for area);
  3. upsample the *scores* to pixels: bilinear, or guided by the picture so edges follow the image;
  4. compare the pixel scores with the cut;
  5. grow/shrink, feather, invert (invert last, so "grow" always grows the concept's region).
A picture is a clip of one frame: every map goes through the same steps as a video's, with one cut
per clip (so one per picture), and gives one mask per pixel frame. Pure torch; no ComfyUI import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..checks.errors import ConceptAttentionError
from ..checks.finite import check_finite_saliency
from .image_batch import check_clip_frames, picture_of
from .morphology import check_feather, check_grow, edit_masks
from .presence import absence_note, present_clips
from .resample import frame_chunks, frames_between, resize_pictures, upsample
from .saliency_maps import SaliencyMaps
from .thresholds import (
    DEFAULT_MASK_METHOD,
    MASK_METHODS,
    argmax_masks,
    cut_values,
    normalize_per_image,
    top_cut,
    unknown_method,
)

__all__ = ["DEFAULT_MASK_METHOD", "MASK_METHODS", "saliency_to_mask", "saliency_to_mask_and_note"]


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


def _output_size(saliency: SaliencyMaps, output_size: tuple[int, int] | None) -> tuple[int, int]:
    try:
        size = tuple(int(s) for s in (output_size if output_size is not None else saliency.image_size))
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ConceptAttentionError(f"output size must be two positive numbers (height, width), got {output_size!r}")
    return size


def saliency_to_mask(saliency: SaliencyMaps, concepts: Sequence[str] | str, *args, **kwargs) -> torch.Tensor:
    """The MASK of saliency_to_mask_and_note (the same arguments), without its note."""
    return saliency_to_mask_and_note(saliency, concepts, *args, **kwargs)[0]


def saliency_to_mask_and_note(
    saliency: SaliencyMaps,
    concepts: Sequence[str] | str,
    method: str = DEFAULT_MASK_METHOD,
    threshold: float = 0.5,
    grow: int = 0,
    feather: float = 0.0,
    invert: bool = False,
    guide_image: torch.Tensor | None = None,
    output_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, str]:
    """(MASK, note): the note says which clips got an empty mask because the concepts are absent
    ("" when none did). MASK [B·F, H, W] float32 in [0, 1] for the chosen concept(s): one per pixel frame, clips one
    after another as ComfyUI stores video frames; a picture is a clip of one frame, so pictures give
    [B, H, W].

    method: one of MASK_METHODS (thresholds.threshold_masks / argmax_masks explain each); "mean" (the
    default) gives an empty mask in a clip the concepts are absent from (presence.py), before invert,
    where "relative_mean" cuts at the mean anyway; threshold is
    the value for "value" and the percent for "top_percent", ignored otherwise. Several concepts are
    combined by summing their maps (argmax: any of them wins). guide_image (the picture the maps
    were made from, one or one per map; for a video all B·F decoded frames) makes the mask edges
    follow the image. Output size: saliency.image_size unless output_size (height, width) is given.

    Time: pixel frame f reads the token frames around it, linearly interpolated
    (SaliencyMaps.pixel_frame_sources), then space (bilinear, or guided by that very frame).
    Cuts are per clip, not per frame: mean, Otsu and value are decided on the scores of all the clip's
    token frames, top_percent on all its pixel frames (the percent of the clip's area over time), soft
    is normalised over the clip. So one cut holds across the clip: an object that leaves the scene is
    not masked at half strength in the frames it is absent from, and the mask does not flicker as
    other concepts come and go. argmax needs no cut: the winner is taken per pixel of each frame.
    """
    if not isinstance(saliency, SaliencyMaps):
        raise ConceptAttentionError(f"expected SALIENCY (SaliencyMaps), got {type(saliency).__name__}")
    if method not in MASK_METHODS:
        raise unknown_method(method, MASK_METHODS)
    selected = _selected_indices(saliency, concepts)
    _validate_threshold(method, threshold, saliency.softmax)
    check_grow(grow)
    check_feather(feather)
    maps = saliency.clips.float()
    check_finite_saliency(maps, "no mask can be cut from them")
    size = _output_size(saliency, output_size)
    guide_frames = None
    if guide_image is not None:
        guide_frames = check_clip_frames(guide_image, saliency, role="guide image")
    out = torch.empty(saliency.batch_size * saliency.clip_frames, *size, dtype=torch.float32)
    present = present_clips(saliency, selected) if method == "mean" else [True] * saliency.batch_size
    for b in range(saliency.batch_size):
        if present[b]:
            _clip_masks(saliency, maps[b], selected, method, threshold, guide_frames, out, b)
        else:
            out[b * saliency.clip_frames : (b + 1) * saliency.clip_frames] = 0.0
    for start, stop in frame_chunks(out.shape[0], size[0] * size[1]):
        target = out[start:stop]
        target.copy_(edit_masks(target, grow, feather, invert))
    return out, absence_note(saliency, [saliency.names[i] for i in selected], present)


def _clip_masks(saliency: SaliencyMaps, clip_maps: torch.Tensor, selected: list[int], method: str,
                threshold: float, guide_frames: torch.Tensor | None, out: torch.Tensor, b: int) -> None:
    """Write the cut masks of clip b (maps [r, T, h, w]) into its F frames of out [B·F, H, W]."""
    frames = saliency.clip_frames
    r = clip_maps.shape[0]
    size = tuple(out.shape[-2:])
    before, after, weight = saliency.pixel_frame_sources()
    first = b * frames
    clip = clip_maps.transpose(0, 1)  # [T, r, h, w]
    if method == "argmax":
        scores = clip
    else:
        scores = clip[:, selected].sum(dim=1)  # [T, h, w]: combine_scores over the clip
        if method == "soft":
            scores = normalize_per_image(scores.unsqueeze(0))[0]
    cut = None
    if method in ("mean", "relative_mean", "otsu", "value"):
        cut = cut_values(scores.unsqueeze(0), method, threshold)[0]
    per_frame = size[0] * size[1] * (r if method == "argmax" else 1)
    for start, stop in frame_chunks(frames, per_frame):
        frame_scores = frames_between(scores, before[start:stop], after[start:stop], weight[start:stop])
        guide = None
        if guide_frames is not None:
            rgb = torch.stack([picture_of(guide_frames, k) for k in range(first + start, first + stop)]).float()
            guide = resize_pictures(rgb.clamp_(0.0, 1.0), size)  # the filter runs at the output resolution
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
        cut = top_cut(clip_pixels.view(-1), threshold)
        for start, stop in frame_chunks(frames, size[0] * size[1]):
            target = clip_pixels[start:stop]
            target.copy_(target > cut)
