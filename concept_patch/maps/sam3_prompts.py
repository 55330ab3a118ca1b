"""From saliency maps to the prompts of ComfyUI's SAM 3 nodes (comfy_extras/nodes_sam3.py), in the exact types
they read:

- boxes, SAM3_Detect's `bboxes` (BOUNDING_BOX): one list of {"x", "y", "width", "height"} (ints, pixels, top-left
  corner) per picture of the MASK batch (for a video per decoded frame, clips one after another), the per-frame
  form SAM3_Detect reads; a box per connected region of each chosen concept's mask, largest first;
- points, SAM3_Detect's `positive_coords` / `negative_coords` (STRING): JSON [{"x": int, "y": int}, ...] in
  pixels of one picture (SAM3_Detect gives the same points to every picture of its batch): positives at the
  chosen concepts' peaks, negatives at the other concepts' peaks (peaks.py);
- initial masks, SAM3_VideoTrack's `initial_mask` (MASK [objects, H, W]): the first frame's mask of every chosen
  concept (or of each of its regions), one object each.

The masks are Saliency to Mask's (masks.py), one concept at a time, so a box outlines what that node would mask.
Pure torch; no ComfyUI import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import torch

from ..checks.errors import ConceptAttentionError
from ..checks.finite import check_finite_saliency
from .masks import saliency_to_mask_and_note
from .peaks import concept_peaks, token_centre
from .regions import label_regions, region_mask, regions_of
from .resample import frame_chunks, frames_between
from .saliency_maps import SaliencyMaps
from .thresholds import MASK_METHODS

# Methods that cut a mask with an edge (not "soft": a continuous map has no regions).
REGION_METHODS = tuple(m for m in MASK_METHODS if m != "soft")
OBJECT_KINDS = ("concepts", "regions")
MAX_SAM3_OBJECTS = 64  # SAM3_VideoTrack tracks at most 64 objects (its max_objects input and internal cap)
MAX_PER_CONCEPT = 64
LABEL_CHUNK_PIXELS = 1 << 22  # pixels labelled at once (the labelling holds a few long tensors of this size)


def _check_saliency(saliency: object) -> SaliencyMaps:
    if not isinstance(saliency, SaliencyMaps):
        raise ConceptAttentionError(f"expected SALIENCY (SaliencyMaps), got {type(saliency).__name__}")
    check_finite_saliency(saliency.maps, "no SAM 3 prompt can be made from them")
    return saliency


def _chosen(saliency: SaliencyMaps, concepts: Sequence[str]) -> list[int]:
    """The chosen concepts' indices, in the order given, each once; a clear error for none or an unknown name."""
    names = [c for c in concepts if isinstance(c, str) and c.strip()]
    if not names or len(names) != len(concepts):
        raise ConceptAttentionError(
            f"choose one or more concept names (non-empty text); available: {', '.join(saliency.names)}")
    chosen: list[int] = []
    for name in names:
        index = saliency.index_of(name)
        if index not in chosen:
            chosen.append(index)
    return chosen


def _count(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConceptAttentionError(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _min_pixels(min_area: object, size: tuple[int, int]) -> int:
    """min_area, a percent of the picture, as a pixel count (at least 1)."""
    if isinstance(min_area, bool) or not isinstance(min_area, (int, float)) or not math.isfinite(min_area) \
            or not 0 <= min_area <= 100:
        raise ConceptAttentionError(f"min_area is a percent of the picture, 0 to 100, got {min_area!r}")
    return max(1, math.ceil(min_area / 100.0 * size[0] * size[1]))


def _check_method(method: object) -> None:
    if method not in REGION_METHODS:
        raise ConceptAttentionError(
            f"mask method {method!r} cannot outline regions; accepted: {', '.join(REGION_METHODS)} ('soft' is a "
            "continuous map: it has no edge to box)")


def _concept_mask(saliency, index, method, threshold, guide_image) -> torch.Tensor:
    return saliency_to_mask_and_note(saliency, saliency.names[index], method=method, threshold=threshold,
                                     guide_image=guide_image)[0]


def sam3_boxes(saliency: SaliencyMaps, concepts: Sequence[str], method: str = "mean", threshold: float = 0.5,
               max_boxes: int = 1, min_area: float = 0.5, guide_image: torch.Tensor | None = None,
               ) -> tuple[list[list[dict]], str]:
    """(boxes, note): SAM3_Detect's `bboxes`, one list per MASK frame. Each chosen concept (in the order given)
    adds its mask's connected regions (8 neighbours) of at least `min_area` percent of the picture, largest first,
    at most `max_boxes` of them per frame. The note names the concepts that got no box (and in which frames)."""
    saliency = _check_saliency(saliency)
    chosen = _chosen(saliency, concepts)
    _check_method(method)
    max_boxes = _count(max_boxes, "max_boxes", 0, MAX_PER_CONCEPT)
    floor = _min_pixels(min_area, saliency.image_size)
    frames = saliency.batch_size * saliency.clip_frames
    boxes: list[list[dict]] = [[] for _ in range(frames)]
    missing: dict[str, list[int]] = {}
    if max_boxes == 0:
        return boxes, ""
    h, w = saliency.image_size
    for index in chosen:
        mask = _concept_mask(saliency, index, method, threshold, guide_image)
        for start, stop in frame_chunks(frames, h * w, LABEL_CHUNK_PIXELS):
            for offset, regions in enumerate(regions_of(label_regions(mask[start:stop]), floor)):
                boxes[start + offset].extend(region.box() for region in regions[:max_boxes])
                if not regions:
                    missing.setdefault(saliency.names[index], []).append(start + offset)
    return boxes, _missing_note(missing, frames, "no box", f"no region of at least {min_area:g}% of the picture")


def _missing_note(missing: dict[str, list[int]], frames: int, what: str, why: str) -> str:
    parts = []
    for name, where in missing.items():
        if frames == 1:
            parts.append(f"{name!r}")
        elif len(where) == frames:
            parts.append(f"{name!r} (in every frame)")
        else:
            shown = ", ".join(str(k) for k in where[:8]) + (", ..." if len(where) > 8 else "")
            parts.append(f"{name!r} (frames {shown})")
    return f"{what} for {'; '.join(parts)}: {why}" if parts else ""


def frame_token_maps(saliency: SaliencyMaps, frame: int) -> torch.Tensor:
    """The maps [r, h, w] on the token grid behind MASK frame `frame` (clip·F + f; a picture's index in its batch),
    interpolated in time between token frames as Saliency to Mask reads them."""
    total = saliency.batch_size * saliency.clip_frames
    frame = _count(frame, "frame", 0, max(0, total - 1))
    clip, f = divmod(frame, saliency.clip_frames)
    before, after, weight = saliency.pixel_frame_sources()
    clip_maps = saliency.clips[clip].float().transpose(0, 1)  # [T, r, h, w]
    return frames_between(clip_maps, before[f : f + 1], after[f : f + 1], weight[f : f + 1])[0]


def sam3_points(saliency: SaliencyMaps, concepts: Sequence[str], points: int = 3, negative_points: int = 1,
                frame: int = 0) -> tuple[str, str, str]:
    """(positive_coords, negative_coords, note) for SAM3_Detect, on MASK frame `frame`: up to `points` peaks of every
    chosen concept, and up to `negative_points` peaks of every other concept of the maps, each where its concept
    wins (peaks.py), as JSON [{"x": int, "y": int}, ...] in pixels of saliency.image_size. The note names the
    chosen concepts that win no token there (they get no point)."""
    saliency = _check_saliency(saliency)
    chosen = _chosen(saliency, concepts)
    points = _count(points, "points", 0, MAX_PER_CONCEPT)
    negative_points = _count(negative_points, "negative_points", 0, MAX_PER_CONCEPT)
    maps = frame_token_maps(saliency, frame)
    grid, size = saliency.grid, saliency.image_size

    def coords(indices: list[int], count: int) -> tuple[list[dict], list[str]]:
        found, none = [], []
        for index in indices:
            peaks = concept_peaks(maps, index, count)
            found.extend(token_centre(row, col, grid, size) for row, col in peaks)
            if count and not peaks:
                none.append(saliency.names[index])
        return found, none

    positive, absent = coords(chosen, points)
    others = [i for i in range(len(saliency.names)) if i not in chosen]
    negative, _ = coords(others, negative_points)
    note = ""
    if absent:
        where = "" if saliency.batch_size * saliency.clip_frames == 1 else f" in frame {frame}"
        note = f"no positive point for {', '.join(repr(n) for n in absent)}: it wins no part of the maps{where}"
    return json.dumps(positive), json.dumps(negative), note


def sam3_initial_masks(saliency: SaliencyMaps, concepts: Sequence[str], method: str = "mean", threshold: float = 0.5,
                       objects: str = "concepts", max_regions: int = 1, min_area: float = 0.5, clip: int = 0,
                       guide_image: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str], str]:
    """(masks [objects, H, W] float 0/1, object names, note): SAM3_VideoTrack's `initial_mask`, the first frame of
    clip `clip`. objects "concepts": one object per chosen concept (its whole mask), "regions": one per connected
    region of at least `min_area` percent, largest first, up to `max_regions` per concept. A concept with nothing
    in the first frame gives no object (the note names it); none at all is an error, as SAM3_VideoTrack needs an
    object to track."""
    saliency = _check_saliency(saliency)
    chosen = _chosen(saliency, concepts)
    _check_method(method)
    if objects not in OBJECT_KINDS:
        raise ConceptAttentionError(f"unknown objects {objects!r}; accepted: {', '.join(OBJECT_KINDS)}")
    max_regions = _count(max_regions, "max_regions", 1, MAX_SAM3_OBJECTS)
    floor = _min_pixels(min_area, saliency.image_size)
    clip = _count(clip, "clip", 0, saliency.batch_size - 1)
    first = clip * saliency.clip_frames
    masks: list[torch.Tensor] = []
    names: list[str] = []
    missing: dict[str, list[int]] = {}
    for index in chosen:
        name = saliency.names[index]
        frame_mask = _concept_mask(saliency, index, method, threshold, guide_image)[first : first + 1]
        if objects == "concepts":
            if bool((frame_mask > 0.5).any()):
                masks.append((frame_mask[0] > 0.5).float())
                names.append(name)
            else:
                missing[name] = [0]
            continue
        labels = label_regions(frame_mask)
        regions = regions_of(labels, floor)[0][:max_regions]
        if not regions:
            missing[name] = [0]
        for k, region in enumerate(regions):
            masks.append(region_mask(labels, region, 0))
            names.append(name if len(regions) == 1 else f"{name} ({k + 1})")
    why = "nothing of it in the first frame" + (f" (no region of at least {min_area:g}%)" if objects == "regions" else "")
    note = _missing_note(missing, 1, "no initial mask", why)
    if not masks:
        raise ConceptAttentionError(
            f"{', '.join(repr(saliency.names[i]) for i in chosen)}: {why}, so there is no object for SAM3_VideoTrack "
            "to track; choose a concept present in the first frame, or another mask method or threshold")
    if len(masks) > MAX_SAM3_OBJECTS:
        raise ConceptAttentionError(
            f"{len(masks)} objects, but SAM3_VideoTrack tracks at most {MAX_SAM3_OBJECTS}: choose fewer concepts or "
            "a smaller max_regions")
    return torch.stack(masks), names, note


def object_list(names: Sequence[str]) -> str:
    """The objects' indices for SAM3_TrackToMask's object_indices, one line each: "0: dog"."""
    return "\n".join(f"{k}: {name}" for k, name in enumerate(names))
