"""The SAM 3 nodes against ComfyUI's own: their outputs are of the socket types SAM3_Detect and SAM3_VideoTrack take,
and what the nodes return is what the pack's code makes of the maps."""

from __future__ import annotations

import json

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention.concept_patch.maps.sam3_prompts import sam3_boxes, sam3_initial_masks, sam3_points
from concept_attention.nodes.sam3 import SaliencyToSAM3InitialMasks, SaliencyToSAM3Prompts


def _io_types(schema, side: str) -> dict[str, str]:
    sockets = schema.inputs if side == "inputs" else schema.outputs
    return {(s.display_name or s.id): s.get_io_type() for s in sockets}


def test_outputs_are_the_types_the_stock_sam3_nodes_take():
    from comfy_extras.nodes_sam3 import SAM3_Detect, SAM3_VideoTrack

    detect = {s.id: s.get_io_type() for s in SAM3_Detect.define_schema().inputs}
    track = {s.id: s.get_io_type() for s in SAM3_VideoTrack.define_schema().inputs}
    prompts = _io_types(SaliencyToSAM3Prompts.define_schema(), "outputs")
    assert prompts == {name: detect[name] for name in ("bboxes", "positive_coords", "negative_coords")}
    assert prompts["bboxes"] == "BOUNDING_BOX"
    initial = _io_types(SaliencyToSAM3InitialMasks.define_schema(), "outputs")
    assert initial["initial_mask"] == track["initial_mask"] == "MASK"


def _saliency() -> SaliencyMaps:
    maps = torch.full((1, 3, 4, 6), 0.1)
    maps[0, 2] = 0.6
    maps[0, 0, 0:2, 0:2] = 0.9
    maps[0, 0, 3, 5] = 0.8
    maps[0, 1, 2:4, 0:2] = 0.9
    return SaliencyMaps(maps, ["dog", "cat", "sky"], (64, 96))


def test_prompts_node_returns_the_packs_boxes_and_points():
    out = SaliencyToSAM3Prompts.execute(saliency=_saliency(), concepts="Dog", method="argmax", threshold=0.5,
                                        min_area=0.0, max_boxes=2, points=2, negative_points=1, frame=0)
    boxes, positive, negative = out.result
    assert boxes == sam3_boxes(_saliency(), ["dog"], method="argmax", max_boxes=2, min_area=0.0)[0]
    assert (positive, negative) == sam3_points(_saliency(), ["dog"], points=2, negative_points=1)[:2]
    assert len(boxes[0]) == 2 and len(json.loads(positive)) == 2 and len(json.loads(negative)) == 2
    assert out.ui == {"concept_mask_note": [""]}


def test_initial_masks_node_lists_its_objects():
    out = SaliencyToSAM3InitialMasks.execute(saliency=_saliency(), concepts="dog, cat", method="argmax",
                                             threshold=0.5, min_area=0.0, objects="concepts", max_regions=1, clip=0)
    masks, objects = out.result
    assert torch.equal(masks, sam3_initial_masks(_saliency(), ["dog", "cat"], method="argmax", min_area=0.0)[0])
    assert masks.shape == (2, 64, 96) and objects == "0: dog\n1: cat"


@pytest.mark.parametrize("concepts, message", [("horse", "not in these saliency maps"),
                                               ("", "choose one or more concept names")])
def test_nodes_refuse_bad_concepts_clearly(concepts, message):
    with pytest.raises(ConceptAttentionError, match=message):
        SaliencyToSAM3Prompts.execute(saliency=_saliency(), concepts=concepts, method="mean", threshold=0.5,
                                      min_area=0.5, max_boxes=1, points=3, negative_points=1, frame=0)
    with pytest.raises(ConceptAttentionError, match=message):
        SaliencyToSAM3InitialMasks.execute(saliency=_saliency(), concepts=concepts, method="mean", threshold=0.5,
                                           min_area=0.5, objects="concepts", max_regions=1, clip=0)


def test_a_picture_of_another_size_is_refused():
    with pytest.raises(ConceptAttentionError, match="guide image"):
        SaliencyToSAM3Prompts.execute(saliency=_saliency(), concepts="dog", method="argmax", threshold=0.5,
                                      min_area=0.0, max_boxes=1, points=1, negative_points=0, frame=0,
                                      image=torch.zeros(1, 32, 32, 3))
