"""Saliency to SAM 3 Prompts and Saliency to SAM 3 Initial Masks: the concepts' regions as prompts for ComfyUI's own
SAM 3 nodes (SAM3_Detect, SAM3_VideoTrack), which draw crisp edges and track (docs/sam3.md)."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_patch.maps.sam3_prompts import (
    MAX_PER_CONCEPT,
    MAX_SAM3_OBJECTS,
    OBJECT_KINDS,
    REGION_METHODS,
    object_list,
    sam3_boxes,
    sam3_initial_masks,
    sam3_points,
)
from ..concept_patch.text.concepts import split_names
from .schema import pack_schema
from .types import Saliency

# ComfyUI's BOUNDING_BOX socket (SAM3_Detect's bboxes); ComfyUI 0.3.x has no such type (nor SAM 3), so the same
# socket type is declared by name there and the pack still loads.
BoundingBox = getattr(io, "BoundingBox", None) or io.Custom("BOUNDING_BOX")

SALIENCY_TOOLTIP = "From Concept Saliency, Concept Saliency from Sampling or Load Saliency."
CONCEPTS_TOOLTIP = ("Concept name(s) to segment, comma separated (matched without regard to case), each with boxes "
                    "of its own.")


def _mask_inputs(what: str) -> list:
    return [
        io.Combo.Input(
            "method", options=list(REGION_METHODS), default="mean",
            tooltip=f"How each concept's mask is cut before its {what} are read, as in Saliency to Mask: mean (the "
                    "paper's; nothing where the concept is absent), relative_mean, otsu, value, top_percent, or "
                    "argmax (where the concept beats all others: keeps touching concepts apart)."),
        io.Float.Input("threshold", default=0.5, min=0.0, max=100.0, step=0.01,
                       tooltip="For 'value' (a map value, 0-1 for softmax maps) and 'top_percent' (percent of the "
                               "picture). Ignored by the other methods."),
        io.Float.Input("min_area", default=0.5, min=0.0, max=100.0, step=0.1,
                       tooltip="Regions smaller than this percent of the picture are left out (specks)."),
    ]


def _image_input() -> io.Image.Input:
    return io.Image.Input(
        "image", optional=True,
        tooltip="The picture (a video: all its decoded frames) the maps were made from: mask edges follow it, "
                "and its size is checked against the maps'. Give SAM 3 this same picture.")


class SaliencyToSAM3Prompts(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionSaliencyToSAM3Prompts", "Saliency to SAM 3 Prompts",
            "Where the chosen concepts are, as prompts for ComfyUI's SAM3 Detect (load the SAM 3 checkpoint with "
            "Load Checkpoint): boxes around each concept's regions (largest first) for its bboxes input, points at "
            "the concepts' peaks for positive_coords and at the other concepts' peaks for negative_coords. Give "
            "SAM3 Detect the same picture; it returns crisp masks. Boxes give one mask per region; points one mask "
            "from all of them; both: their union (individual_masks off).",
            inputs=[
                Saliency.Input("saliency", tooltip=SALIENCY_TOOLTIP),
                io.String.Input("concepts", default="", tooltip=CONCEPTS_TOOLTIP),
                *_mask_inputs("boxes"),
                io.Int.Input("max_boxes", default=1, min=0, max=MAX_PER_CONCEPT,
                             tooltip="Boxes per concept and picture: its largest regions (1 = the main object, "
                                     "0 = no boxes)."),
                io.Int.Input("points", default=3, min=0, max=MAX_PER_CONCEPT,
                             tooltip="Positive points per concept: its strongest peaks, where it wins, at least two "
                                     "tokens apart."),
                io.Int.Input("negative_points", default=1, min=0, max=MAX_PER_CONCEPT,
                             tooltip="Negative points per other concept of the maps (not chosen): its strongest "
                                     "peaks. 0 = none."),
                io.Int.Input("frame", default=0, min=0, max=1 << 20,
                             tooltip="The picture of the batch (a video: the decoded frame, clips one after another) "
                                     "whose points are given: SAM3 Detect uses the same points for every picture "
                                     "it gets."),
                _image_input(),
            ],
            outputs=[
                BoundingBox.Output(display_name="bboxes",
                                      tooltip="For SAM3 Detect's bboxes: one list of boxes (pixels) per picture."),
                io.String.Output(display_name="positive_coords",
                                 tooltip='For SAM3 Detect\'s positive_coords: JSON [{"x": int, "y": int}, ...].'),
                io.String.Output(display_name="negative_coords",
                                 tooltip="For SAM3 Detect's negative_coords: the other concepts' peaks, same format."),
            ],
        )

    @classmethod
    def execute(cls, saliency, concepts, method, threshold, min_area, max_boxes, points, negative_points, frame,
                image=None) -> io.NodeOutput:
        names = split_names(concepts)
        boxes, box_note = sam3_boxes(saliency, names, method=method, threshold=threshold, max_boxes=max_boxes,
                                     min_area=min_area, guide_image=image)
        positive, negative, point_note = sam3_points(saliency, names, points=points,
                                                     negative_points=negative_points, frame=frame)
        note = "; ".join(n for n in (box_note, point_note) if n)
        return io.NodeOutput(boxes, positive, negative, ui={"concept_mask_note": [note]})


class SaliencyToSAM3InitialMasks(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionSaliencyToSAM3InitialMasks", "Saliency to SAM 3 Initial Masks",
            "The chosen concepts in the first frame of a clip, one mask per object, for Run SAM3 Video Track's "
            "initial_mask: SAM 3 then tracks them through the video with crisp edges (SAM3 Track to Mask picks "
            "objects by the indices listed in 'objects'). Works on a video's maps (their first frame) and on a "
            "picture's (e.g. Concept Saliency on the video's first frame).",
            inputs=[
                Saliency.Input("saliency", tooltip=SALIENCY_TOOLTIP),
                io.String.Input("concepts", default="",
                                tooltip="Concept name(s) to track, comma separated (matched without regard to case)."),
                *_mask_inputs("objects"),
                io.Combo.Input("objects", options=list(OBJECT_KINDS), default="concepts",
                               tooltip="concepts: one object per concept (its whole first-frame mask); regions: one "
                                       "per connected region of each concept, largest first (several dogs: "
                                       "several objects)."),
                io.Int.Input("max_regions", default=1, min=1, max=MAX_SAM3_OBJECTS,
                             tooltip="With objects = regions: at most this many regions per concept."),
                io.Int.Input("clip", default=0, min=0, max=4096,
                             tooltip="For maps of several clips: which clip's first frame."),
                _image_input(),
            ],
            outputs=[
                io.Mask.Output(display_name="initial_mask",
                               tooltip="MASK [objects, height, width], 0/1: Run SAM3 Video Track's initial_mask."),
                io.String.Output(display_name="objects",
                                 tooltip="The objects in order, '0: dog' per line: the indices SAM3 Track to Mask's "
                                         "object_indices takes."),
            ],
        )

    @classmethod
    def execute(cls, saliency, concepts, method, threshold, min_area, objects, max_regions, clip,
                image=None) -> io.NodeOutput:
        masks, names, note = sam3_initial_masks(
            saliency, split_names(concepts), method=method, threshold=threshold, objects=objects,
            max_regions=max_regions, min_area=min_area, clip=clip, guide_image=image)
        return io.NodeOutput(masks, object_list(names), ui={"concept_mask_note": [note]})
