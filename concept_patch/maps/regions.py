"""Connected regions of masks, and their bounding boxes: plain torch, no image library.

A region is a set of mask pixels joined through their 8 neighbours (or 4, on request). Labelling is parallel
min-label propagation with pointer jumping: every pixel starts with its own flat index as label, takes the smallest
label among its neighbours, hooks its label's root to that smaller label, and follows labels to their roots; when
nothing changes each region carries the index of its first pixel (raster order). All pictures of a batch are
labelled at once (labels never cross pictures: neighbours are taken inside each picture only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks.errors import ConceptAttentionError

CONNECTIVITIES = (4, 8)


@dataclass(frozen=True)
class Region:
    """One connected region of a picture's mask: its pixel count and its box in pixels, the half-open ranges
    [x, x + width) x [y, y + height) (x, y: the top-left pixel), as ComfyUI's BOUNDING_BOX counts them; `label` is
    its label in label_regions' labels."""

    label: int
    area: int
    x: int
    y: int
    width: int
    height: int

    def box(self) -> dict:
        """{"x", "y", "width", "height"}: ComfyUI's BOUNDING_BOX entry (ints, pixels)."""
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


def _neighbour_min(labels: torch.Tensor, fill: int, connectivity: int) -> torch.Tensor:
    """The smallest label among each pixel and its neighbours inside its own picture, labels [B, H, W]; `fill`
    (larger than every label) stands for pixels outside the picture and for background."""
    padded = torch.nn.functional.pad(labels, (1, 1, 1, 1), value=fill)
    h, w = labels.shape[-2:]
    out = labels.clone()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy, dx) == (0, 0) or (connectivity == 4 and dy != 0 and dx != 0):
                continue
            torch.minimum(out, padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], out=out)
    return out


def label_regions(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """Connected-region labels of mask [B, H, W] (bool, or numbers: > 0.5 is inside): long [B, H, W], -1 for
    background, else the flat index (over the whole batch) of the region's first pixel in raster order."""
    if connectivity not in CONNECTIVITIES:
        raise ConceptAttentionError(f"connectivity must be 4 or 8 neighbours, got {connectivity!r}")
    if mask.ndim != 3:
        raise ConceptAttentionError(f"expected masks [batch, height, width], got shape {tuple(mask.shape)}")
    inside = mask if mask.dtype == torch.bool else mask > 0.5
    b, h, w = inside.shape
    n = b * h * w
    fill = n  # the background's label while propagating: larger than every pixel index
    parent = torch.arange(n + 1, dtype=torch.long)  # parent[n] = n: the background's root
    flat_inside = inside.reshape(-1)
    parent[:n] = torch.where(flat_inside, parent[:n], torch.full_like(parent[:n], fill))
    while True:
        labels = parent[:n].view(b, h, w)
        smallest = _neighbour_min(labels, fill, connectivity).view(-1)
        smallest = torch.where(flat_inside, smallest, torch.full_like(smallest, fill))
        hooked = parent.clone()
        # hook: the root a pixel points at takes the smallest label seen next to that pixel
        hooked.scatter_reduce_(0, parent[:n][flat_inside], smallest[flat_inside], reduce="amin")
        hooked[:n] = torch.minimum(hooked[:n], smallest)
        while True:  # pointer jumping: follow labels to their roots
            jumped = hooked[hooked]
            if torch.equal(jumped, hooked):
                break
            hooked = jumped
        if torch.equal(hooked, parent):
            break
        parent = hooked
    labels = parent[:n].view(b, h, w)
    return torch.where(inside, labels, torch.full_like(labels, -1))


def mask_regions(mask: torch.Tensor, connectivity: int = 8, min_area: int = 1) -> list[list[Region]]:
    """For every picture of mask [B, H, W], its connected regions of at least `min_area` pixels, largest first
    (equal areas: the region whose first pixel comes first in raster order first)."""
    return regions_of(label_regions(mask, connectivity), min_area)


def regions_of(labels: torch.Tensor, min_area: int = 1) -> list[list[Region]]:
    """The regions of label_regions' labels [B, H, W], per picture, at least `min_area` pixels, largest first."""
    b, h, w = labels.shape
    out: list[list[Region]] = [[] for _ in range(b)]
    flat = labels.reshape(-1)
    inside = flat >= 0
    if not bool(inside.any()):
        return out
    ids, compact = torch.unique(flat[inside], return_inverse=True)  # ids ascending: raster order of first pixels
    positions = torch.arange(b * h * w, dtype=torch.long)[inside]
    xs, ys = positions % w, (positions // w) % h
    count = ids.numel()
    area = torch.bincount(compact, minlength=count)

    def reduce(values: torch.Tensor, how: str, start: int) -> torch.Tensor:
        return torch.full((count,), start, dtype=torch.long).scatter_reduce_(0, compact, values, reduce=how)

    x0, x1 = reduce(xs, "amin", w), reduce(xs, "amax", -1)
    y0, y1 = reduce(ys, "amin", h), reduce(ys, "amax", -1)
    picture = ids // (h * w)
    order = sorted(range(count), key=lambda k: (-int(area[k]), int(ids[k])))
    for k in order:
        if int(area[k]) >= min_area:
            out[int(picture[k])].append(Region(int(ids[k]), int(area[k]), int(x0[k]), int(y0[k]),
                                               int(x1[k] - x0[k] + 1), int(y1[k] - y0[k] + 1)))
    return out


def region_mask(labels: torch.Tensor, region: Region, picture: int) -> torch.Tensor:
    """The pixels [H, W] (float 0/1) of one region, from the labels of label_regions that mask_regions read."""
    return (labels[picture] == region.label).float()
