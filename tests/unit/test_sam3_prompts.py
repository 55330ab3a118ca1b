"""Boxes, points and initial masks for ComfyUI's SAM 3 nodes, from synthetic maps whose regions and peaks are known:
connected regions (plain torch) against a brute-force flood fill, boxes in BOUNDING_BOX's pixel convention, points
in SAM3_Detect's JSON, initial masks as SAM3_VideoTrack reads them."""

from __future__ import annotations

import json
import random

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.maps.peaks import concept_peaks, token_centre
from concept_attention.concept_patch.maps.regions import label_regions, mask_regions
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention.concept_patch.maps.sam3_prompts import (
    object_list,
    sam3_boxes,
    sam3_initial_masks,
    sam3_points,
)

NAMES = ["dog", "cat", "sky"]
GRID = (8, 12)  # token grid h x w
SIZE = (64, 96)  # picture H x W: 8 px a token


def _flood_regions(mask: torch.Tensor, connectivity: int) -> list[set]:
    """Regions of one picture's mask [H, W] by a plain flood fill (the reference for label_regions)."""
    h, w = mask.shape
    seen, regions = set(), []
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
             and (connectivity == 8 or dy == 0 or dx == 0)]
    for y in range(h):
        for x in range(w):
            if not mask[y, x] or (y, x) in seen:
                continue
            stack, region = [(y, x)], set()
            seen.add((y, x))
            while stack:
                cy, cx = stack.pop()
                region.add((cy, cx))
                for dy, dx in steps:
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and (ny, nx) not in seen:
                        seen.add((ny, nx))
                        stack.append((ny, nx))
            regions.append(region)
    return regions


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", range(6))
def test_labels_match_a_flood_fill(seed, connectivity):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(3, 17, 23, generator=g) < (0.3 + 0.1 * (seed % 4))
    labels = label_regions(masks, connectivity)
    for b in range(masks.shape[0]):
        expected = _flood_regions(masks[b], connectivity)
        found: dict[int, set] = {}
        for y, x in torch.nonzero(labels[b] >= 0).tolist():
            found.setdefault(int(labels[b, y, x]), set()).add((y, x))
        assert sorted(map(sorted, found.values())) == sorted(map(sorted, expected))
        assert bool(((labels[b] >= 0) == masks[b]).all())
    # labels never cross pictures: every label is a pixel index of its own picture
    per_picture = 17 * 23
    for b in range(masks.shape[0]):
        inside = labels[b][labels[b] >= 0]
        assert bool(((inside // per_picture) == b).all())


def test_a_long_snake_is_one_region():
    mask = torch.zeros(1, 41, 41, dtype=torch.bool)
    mask[0, ::2] = True  # rows joined at alternating ends: one path of 861 pixels
    for row in range(1, 41, 4):
        mask[0, row, 40] = True
    for row in range(3, 41, 4):
        mask[0, row, 0] = True
    [[region]] = mask_regions(mask, connectivity=4)
    assert region.area == int(mask.sum()) and region.box() == {"x": 0, "y": 0, "width": 41, "height": 41}


def test_regions_are_largest_first_with_boxes_in_pixels():
    mask = torch.zeros(2, 10, 12)
    mask[0, 1:3, 1:3] = 1  # 4 px, box x 1..2, y 1..2
    mask[0, 5:9, 4:11] = 1  # 28 px
    mask[0, 0, 11] = 1  # 1 px
    mask[0, 3, 3] = 1  # touches the first block diagonally: joins it under 8-connectivity only
    regions = mask_regions(mask)
    assert [r.area for r in regions[0]] == [28, 5, 1]
    assert regions[0][0].box() == {"x": 4, "y": 5, "width": 7, "height": 4}
    assert regions[0][1].box() == {"x": 1, "y": 1, "width": 3, "height": 3}
    assert regions[1] == []
    assert [r.area for r in mask_regions(mask, connectivity=4)[0]] == [28, 4, 1, 1]
    assert [r.area for r in mask_regions(mask, min_area=2)[0]] == [28, 5]
    with pytest.raises(ConceptAttentionError, match="4 or 8"):
        label_regions(mask, connectivity=6)


def _maps() -> torch.Tensor:
    """dog: two blobs (a big one at rows 1-4, cols 1-4 with its peak at (2, 3), a small one at rows 6-7, cols 9-10);
    cat: one blob at rows 5-7, cols 1-3, peak (6, 2); sky: everywhere else, peak (0, 8)."""
    g = torch.Generator().manual_seed(0)
    maps = torch.full((1, 3, *GRID), 0.05) + 0.01 * torch.rand(1, 3, *GRID, generator=g)
    maps[0, 2] = 0.8
    maps[0, 2, 0, 8] = 0.9
    maps[0, 0, 1:5, 1:5] = 0.85
    maps[0, 0, 2, 3] = 0.95
    maps[0, 0, 6:8, 9:11] = 0.88
    maps[0, 1, 5:8, 1:4] = 0.85
    maps[0, 1, 6, 2] = 0.97
    for name in (0, 1):
        maps[0, 2][maps[0, name] > 0.5] = 0.02
    return maps


def _saliency(maps=None) -> SaliencyMaps:
    return SaliencyMaps(_maps() if maps is None else maps, list(NAMES), SIZE)


def test_boxes_outline_each_region_of_the_concept_largest_first():
    boxes, note = sam3_boxes(_saliency(), ["dog"], method="argmax", max_boxes=4, min_area=0.0)
    assert note == ""
    [frame] = boxes
    # 8 px a token: the big blob spans tokens 1-4 (pixels 8..39), the small one tokens 9-10 x 6-7
    assert len(frame) == 2
    big, small = frame
    assert big["width"] * big["height"] > small["width"] * small["height"]
    for box, (x0, y0, x1, y1) in ((big, (8, 8, 40, 40)), (small, (72, 48, 88, 64))):
        assert all(isinstance(v, int) for v in box.values())
        # bilinear upsampling moves an edge by at most half a token
        assert abs(box["x"] - x0) <= 4 and abs(box["y"] - y0) <= 4
        assert abs(box["x"] + box["width"] - x1) <= 4 and abs(box["y"] + box["height"] - y1) <= 4
    # the count is the user's: the largest only
    assert sam3_boxes(_saliency(), ["dog"], method="argmax", max_boxes=1, min_area=0.0)[0] == [[big]]
    # specks below min_area are left out: the small blob is 256 px of 6144, 4.2 %
    assert sam3_boxes(_saliency(), ["dog"], method="argmax", max_boxes=4, min_area=5.0)[0] == [[big]]


def test_boxes_of_several_concepts_keep_the_order_given():
    [frame], _ = sam3_boxes(_saliency(), ["cat", "dog"], method="argmax", max_boxes=1, min_area=0.0)
    cat, dog = frame
    assert cat["x"] < 16 and cat["y"] >= 36 and dog["y"] < 12


def test_boxes_feed_sam3_detect_as_it_reads_them():
    """SAM3_Detect turns each box into normalised centre/size: the box's centre must fall inside its region."""
    [frame], _ = sam3_boxes(_saliency(), ["dog"], method="argmax", max_boxes=4, min_area=0.0)
    height, width = SIZE
    for box in frame:
        cx = (box["x"] + box["width"] / 2) / width
        cy = (box["y"] + box["height"] / 2) / height
        assert 0 < cx < 1 and 0 < cy < 1
        row, col = int(cy * GRID[0]), int(cx * GRID[1])
        assert _maps()[0, :, row, col].argmax() == 0


def test_an_absent_concept_gets_no_box_and_a_note():
    maps = _maps()
    maps[0, 1] = 0.0  # cat wins nowhere
    boxes, note = sam3_boxes(_saliency(maps), ["cat"], method="argmax")
    assert boxes == [[]] and "'cat'" in note and "no box" in note


def test_points_sit_on_the_peaks_and_negatives_on_the_other_concepts_peaks():
    positive, negative, note = sam3_points(_saliency(), ["dog"], points=2, negative_points=1)
    assert note == ""
    pos, neg = json.loads(positive), json.loads(negative)
    assert all(set(p) == {"x", "y"} and all(isinstance(v, int) for v in p.values()) for p in pos + neg)
    # dog: its peak (2, 3), then the small blob's top-left plateau token (6, 9): centres of 8-px cells
    assert pos == [{"x": 28, "y": 20}, {"x": 76, "y": 52}]
    # negatives: cat's peak (6, 2) and sky's (0, 8)
    assert neg == [{"x": 20, "y": 52}, {"x": 68, "y": 4}]


def test_peaks_are_where_the_concept_wins_and_spaced():
    maps = _maps()[0]
    maps[2, 3, 3] = 0.9  # inside the dog's blob, sky now beats the dog's 0.85: a peak of sky
    peaks = concept_peaks(maps, 2, 10)
    assert (3, 3) in peaks
    maps[0, 3, 3] = 0.99  # the dog wins there again: sky's high value there is no peak of sky
    assert (3, 3) not in concept_peaks(maps, 2, 10)
    for a in concept_peaks(maps, 2, 10):
        for b in concept_peaks(maps, 2, 10):
            assert a == b or max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 2
    assert concept_peaks(maps, 0, 0) == []
    with pytest.raises(ConceptAttentionError, match="whole number"):
        concept_peaks(maps, 0, -1)


def test_token_centres_stay_inside_the_picture():
    assert token_centre(0, 0, (4, 6), (64, 96)) == {"x": 8, "y": 8}
    assert token_centre(3, 5, (4, 6), (64, 96)) == {"x": 88, "y": 56}
    assert token_centre(2, 2, (3, 3), (4, 4)) == {"x": 3, "y": 3}


def test_an_absent_concept_gets_no_point_and_a_note():
    maps = _maps()
    maps[0, 1] = 0.0
    positive, negative, note = sam3_points(_saliency(maps), ["cat"], points=3)
    assert json.loads(positive) == [] and json.loads(negative) != [] and "'cat'" in note


def test_video_points_read_the_chosen_frame():
    """A video: dog in the left of token frame 0 and the right of token frame 1; pixel frame 4 of 5 reads frame 1."""
    maps = torch.full((1, 2, 2, 4, 8), 0.1)
    maps[:, 1] = 0.5  # sky wins wherever the dog is not
    maps[0, 0, 0, 1, 1] = 0.9
    maps[0, 0, 1, 2, 6] = 0.9
    saliency = SaliencyMaps(maps, ["dog", "sky"], (32, 64), frames=5)
    first = json.loads(sam3_points(saliency, ["dog"], points=1, negative_points=0, frame=0)[0])
    last = json.loads(sam3_points(saliency, ["dog"], points=1, negative_points=0, frame=4)[0])
    assert first == [{"x": 12, "y": 12}] and last == [{"x": 52, "y": 20}]
    boxes, _ = sam3_boxes(saliency, ["dog"], method="argmax", min_area=0.0)
    assert len(boxes) == 5 and boxes[0][0]["x"] < 32 and boxes[4][0]["x"] >= 32
    with pytest.raises(ConceptAttentionError, match="frame must be a whole number from 0 to 4"):
        sam3_points(saliency, ["dog"], frame=5)


def test_initial_masks_are_the_first_frames_concepts_one_object_each():
    masks, names, note = sam3_initial_masks(_saliency(), ["dog", "cat"], method="argmax")
    assert masks.shape == (2, *SIZE) and names == ["dog", "cat"] and note == ""
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert masks[0, 20, 28] == 1 and masks[0, 52, 76] == 1 and masks[1, 52, 20] == 1 and masks[1, 20, 28] == 0
    regions, names, _ = sam3_initial_masks(_saliency(), ["dog"], method="argmax", objects="regions", max_regions=2,
                                           min_area=0.0)
    assert names == ["dog (1)", "dog (2)"] and regions.shape == (2, *SIZE)
    assert torch.equal(regions.sum(0), masks[0]) and regions[0].sum() > regions[1].sum()
    assert object_list(names) == "0: dog (1)\n1: dog (2)"


def test_initial_masks_of_a_video_are_its_first_frame():
    maps = torch.full((2, 2, 2, 4, 8), 0.1)
    maps[:, 1] = 0.5  # sky wins wherever the dog is not
    maps[:, 0, 0, :, :4] = 0.9  # token frame 0: dog on the left
    maps[:, 0, 1, :, 4:] = 0.9  # token frame 1: dog on the right
    maps[1, 0, 0] = 0.1
    maps[1, 0, 0, :, 4:] = 0.9  # clip 1 starts with the dog on the right
    saliency = SaliencyMaps(maps, ["dog", "sky"], (32, 64), frames=5)
    [first], names, _ = sam3_initial_masks(saliency, ["dog"], method="argmax")
    assert names == ["dog"] and first[:, :28].all() and not first[:, 36:].any()
    [second], _, _ = sam3_initial_masks(saliency, ["dog"], method="argmax", clip=1)
    assert second[:, 36:].all() and not second[:, :28].any()


def test_initial_masks_refuse_what_sam3_cannot_track():
    maps = _maps()
    maps[0, 1] = 0.0
    masks, names, note = sam3_initial_masks(_saliency(maps), ["dog", "cat"], method="argmax")
    assert names == ["dog"] and "'cat'" in note
    with pytest.raises(ConceptAttentionError, match="no object for SAM3_VideoTrack"):
        sam3_initial_masks(_saliency(maps), ["cat"], method="argmax")
    with pytest.raises(ConceptAttentionError, match="clip must be a whole number from 0 to 0"):
        sam3_initial_masks(_saliency(), ["dog"], clip=1)


@pytest.mark.parametrize("call, message", [
    (lambda s: sam3_boxes(s, ["horse"]), "'horse' is not in these saliency maps"),
    (lambda s: sam3_boxes(s, [""]), "choose one or more concept names"),
    (lambda s: sam3_boxes(s, []), "choose one or more concept names"),
    (lambda s: sam3_boxes(s, ["dog"], method="soft"), "cannot outline regions"),
    (lambda s: sam3_boxes(s, ["dog"], max_boxes=-1), "max_boxes must be a whole number"),
    (lambda s: sam3_boxes(s, ["dog"], min_area=float("nan")), "min_area is a percent"),
    (lambda s: sam3_boxes(s, ["dog"], method="value", threshold=3.0), "softmax probabilities"),
    (lambda s: sam3_points(s, ["dog"], points=1.5), "points must be a whole number"),
    (lambda s: sam3_initial_masks(s, ["dog"], objects="blobs"), "unknown objects"),
    (lambda s: sam3_initial_masks(s, ["dog"], max_regions=0), "max_regions must be a whole number"),
    (lambda s: sam3_boxes("maps", ["dog"]), "expected SALIENCY"),
])
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(ConceptAttentionError, match=message):
        call(_saliency())


def test_non_finite_maps_are_refused():
    maps = _maps()
    maps[0, 0, 0, 0] = float("nan")
    with pytest.raises(ConceptAttentionError, match="SAM 3"):
        sam3_points(_saliency(maps), ["dog"])


def test_labelling_is_fast_enough_for_a_large_mask():
    random.seed(0)
    mask = torch.zeros(1, 512, 512, dtype=torch.bool)
    for _ in range(40):
        y, x, r = random.randrange(512), random.randrange(512), random.randrange(5, 60)
        ys, xs = torch.meshgrid(torch.arange(512), torch.arange(512), indexing="ij")
        mask[0] |= (ys - y) ** 2 + (xs - x) ** 2 < r * r
    regions = mask_regions(mask)[0]
    assert sum(r.area for r in regions) == int(mask.sum())
