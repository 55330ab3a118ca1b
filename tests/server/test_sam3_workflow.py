"""ComfyUI's own SAM 3 nodes fed by the pack, queued over HTTP on a real ComfyUI server.

Concept maps of a picture (the tiny SD3 through the stock loaders, Concept Saliency) -> Saliency to SAM 3 Prompts ->
the stock SAM3 Detect (boxes, positive and negative points) on a tiny random-weight SAM 3.1 built from ComfyUI's
classes (the fixture pack's ConceptAttentionTestTinySAM3: ComfyUI builds every SAM 3 file at full width) -> the stock
inpainting (SetLatentNoiseMask -> KSampler); and Saliency to SAM 3 Initial Masks -> the stock Run SAM3 Video Track ->
SAM3 Track to Mask. The prompts the server made are read back (Preview as Text) and compared with what the pack's
code makes of the saved maps; SAM's masks are compared with SAM3 Detect run here on the same prompts and weights.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from concept_attention_tests.server.workflows import (
    HEIGHT,
    WIDTH,
    empty_latent,
    ksampler_node,
    link,
    node,
    output_files,
    prompt_nodes,
    read_latent,
    read_mask_png,
    require_ok,
    saliency_file,
    saliency_node,
    sd3_loaders,
    unique_prefix,
)

SAM_SEED = 3  # with these weights the point and box masks differ (a random SAM draws what it draws)
GRAY = 0x808080
PROMPT_ARGS = dict(concepts="dog", method="argmax", threshold=0.5, min_area=0.0, max_boxes=2, points=2,
                   negative_points=1, frame=0)


def _maps_nodes(prefix: str) -> dict:
    return {
        **sd3_loaders(),
        "latent": empty_latent(),
        "saliency": saliency_node(seed=7, layers="all"),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix + "_maps"),
        "sam": node("ConceptAttentionTestTinySAM3", seed=SAM_SEED),
    }


def _shown(result, node_id: str) -> str:
    [text] = result.outputs[node_id]["text"]
    return text


def _saved_masks(server, result, node_id: str) -> torch.Tensor:
    return torch.stack([torch.from_numpy(read_mask_png(p).astype(np.float32) / 255.0)
                        for p in sorted(output_files(server, result, node_id))])


def _picture(frames: int = 1) -> torch.Tensor:
    """What EmptyImage makes of GRAY."""
    return torch.full((frames, HEIGHT, WIDTH, 3), 0x80 / 255.0)


def test_sam3_detect_reads_the_packs_boxes_and_points_and_its_mask_drives_inpainting(comfy_server):
    prefix = unique_prefix("sam3_detect")
    prompt = {
        **_maps_nodes(prefix),
        "picture": node("EmptyImage", width=WIDTH, height=HEIGHT, batch_size=1, color=GRAY),
        "prompts": node("ConceptAttentionSaliencyToSAM3Prompts", saliency=link("saliency"), **PROMPT_ARGS),
        "show_boxes": node("PreviewAny", source=link("prompts", 0)),
        "show_positive": node("PreviewAny", source=link("prompts", 1)),
        "show_negative": node("PreviewAny", source=link("prompts", 2)),
        # one mask per prompt (the points', then each box's), and their union for the inpainting
        "detect": node("SAM3_Detect", model=link("sam"), image=link("picture"), bboxes=link("prompts", 0),
                       positive_coords=link("prompts", 1), negative_coords=link("prompts", 2), threshold=0.5,
                       refine_iterations=1, individual_masks=True),
        "masks_image": node("MaskToImage", mask=link("detect")),
        "save_masks": node("SaveImage", images=link("masks_image"), filename_prefix=prefix + "_masks"),
        "union": node("SAM3_Detect", model=link("sam"), image=link("picture"), bboxes=link("prompts", 0),
                      positive_coords=link("prompts", 1), negative_coords=link("prompts", 2), threshold=0.5,
                      refine_iterations=1, individual_masks=False),
        "mask_image": node("MaskToImage", mask=link("union")),
        "save_mask": node("SaveImage", images=link("mask_image"), filename_prefix=prefix + "_mask"),
        "noise_mask": node("SetLatentNoiseMask", samples=link("latent"), mask=link("union")),
        **prompt_nodes(),
        "sampler": ksampler_node(latent="noise_mask", seed=3, steps=2),
        "save_latent": node("SaveLatent", samples=link("sampler"), filename_prefix=prefix + "_latent"),
    }
    result = require_ok(comfy_server.run_prompt(prompt, timeout=600), comfy_server)

    from concept_attention.concept_patch.files.load import load_saliency
    from concept_attention.concept_patch.maps.sam3_prompts import sam3_boxes, sam3_points

    saliency = load_saliency(str(saliency_file(comfy_server, result, "save_maps")))
    args = {k: v for k, v in PROMPT_ARGS.items() if k != "concepts"}
    boxes, _ = sam3_boxes(saliency, ["dog"], method=args["method"], threshold=args["threshold"],
                          max_boxes=args["max_boxes"], min_area=args["min_area"])
    positive, negative, _ = sam3_points(saliency, ["dog"], points=args["points"],
                                        negative_points=args["negative_points"], frame=args["frame"])
    # what the server handed SAM3 Detect: BOUNDING_BOX per picture, the points as SAM3 Detect's JSON
    assert json.loads(_shown(result, "show_boxes")) == boxes
    assert _shown(result, "show_positive") == positive and _shown(result, "show_negative") == negative
    assert boxes[0] and json.loads(positive) and json.loads(negative), "the maps should give boxes and points"

    # SAM's masks: one for the points and one per box, binary, at the picture's size, each what SAM3 Detect makes
    # of these very prompts and weights; the union is theirs
    masks = _saved_masks(comfy_server, result, "save_masks")
    assert masks.shape == (1 + len(boxes[0]), HEIGHT, WIDTH) and set(masks.unique().tolist()) <= {0.0, 1.0}
    [mask] = _saved_masks(comfy_server, result, "save_mask")
    assert torch.equal(mask, masks.amax(dim=0))
    from comfy_extras.nodes_sam3 import SAM3_Detect

    from concept_attention_tests.comfy.tiny.tiny_sam3 import sam3_model

    here = SAM3_Detect.execute(sam3_model(seed=SAM_SEED), _picture(), bboxes=boxes, positive_coords=positive,
                               negative_coords=negative, threshold=0.5, refine_iterations=1,
                               individual_masks=True).result[0]
    assert torch.equal(here, masks), "the server's SAM 3 masks should be SAM3 Detect's on these prompts"

    # the mask drove the inpainting: cells outside it keep the empty latent
    import comfy.utils

    latent = read_latent(output_files(comfy_server, result, "save_latent", "latents")[0])
    noise_mask = comfy.utils.reshape_mask(mask[None], latent.shape)[0, 0]
    keep = noise_mask == 0
    if keep.any():
        kept = latent[0][:, keep]
        assert torch.allclose(kept, kept[:, :1].expand_as(kept), atol=1e-6), "cells outside the mask must stay empty"
    assert (noise_mask > 0).any(), "SAM's mask should cover part of the picture"


def test_sam3_video_track_starts_from_the_packs_initial_masks(comfy_server):
    prefix = unique_prefix("sam3_track")
    frames = 2
    prompt = {
        **_maps_nodes(prefix),
        "frames": node("EmptyImage", width=WIDTH, height=HEIGHT, batch_size=frames, color=GRAY),
        "initial": node("ConceptAttentionSaliencyToSAM3InitialMasks", saliency=link("saliency"), concepts="dog, sky",
                        method="argmax", threshold=0.5, min_area=0.0, objects="concepts", max_regions=1, clip=0),
        "show_objects": node("PreviewAny", source=link("initial", 1)),
        "initial_image": node("MaskToImage", mask=link("initial")),
        "save_initial": node("SaveImage", images=link("initial_image"), filename_prefix=prefix + "_initial"),
        "track": node("SAM3_VideoTrack", images=link("frames"), model=link("sam"), initial_mask=link("initial"),
                      detection_threshold=0.5, max_objects=4, detect_interval=1),
        "dog": node("SAM3_TrackToMask", track_data=link("track"), object_indices="0"),
        "dog_image": node("MaskToImage", mask=link("dog")),
        "save_dog": node("SaveImage", images=link("dog_image"), filename_prefix=prefix + "_dog"),
    }
    result = require_ok(comfy_server.run_prompt(prompt, timeout=600), comfy_server)

    from concept_attention.concept_patch.files.load import load_saliency
    from concept_attention.concept_patch.maps.sam3_prompts import sam3_initial_masks

    saliency = load_saliency(str(saliency_file(comfy_server, result, "save_maps")))
    expected, names, _ = sam3_initial_masks(saliency, ["dog", "sky"], method="argmax", min_area=0.0)
    assert names == ["dog", "sky"], "both concepts should win part of the picture"
    assert _shown(result, "show_objects") == "0: dog\n1: sky"
    initial = _saved_masks(comfy_server, result, "save_initial")
    assert torch.equal(initial, expected), "one first-frame mask per object, as the pack cuts them"

    # SAM3 tracked them: a mask per frame for object 0, starting from the dog's initial mask
    tracked = _saved_masks(comfy_server, result, "save_dog")
    assert tracked.shape == (frames, HEIGHT, WIDTH)
    first = tracked[0] > 0.5
    assert (first == (expected[0] > 0.5)).float().mean() > 0.95, "frame 0 of object 0 should be the dog's mask"


def test_sam3_nodes_refuse_what_they_cannot_make_with_the_packs_error(comfy_server):
    """A concept not in the maps, and a first frame with nothing to track: the pack's error, naming what to change,
    before SAM 3 runs; no traceback, no server path."""
    from concept_attention_tests.server.workflows import error_text

    prefix = unique_prefix("sam3_errors")
    for class_type, inputs, phrases in (
        ("ConceptAttentionSaliencyToSAM3Prompts", dict(PROMPT_ARGS, concepts="horse"),
         ("'horse' is not in these saliency maps", "dog, grass, sky")),
        ("ConceptAttentionSaliencyToSAM3InitialMasks",
         dict(concepts="dog", method="value", threshold=1.0, min_area=0.0, objects="concepts", max_regions=1, clip=0),
         ("nothing of it in the first frame", "no object for SAM3_VideoTrack")),
    ):
        prompt = {
            **_maps_nodes(prefix),
            "bad": node(class_type, saliency=link("saliency"), **inputs),
            "show": node("PreviewAny", source=link("bad", 0)),
        }
        result = comfy_server.run_prompt(prompt, timeout=300)
        assert result.status == "error" and result.error.get("node_type") == class_type, result.describe()
        message = error_text(result)
        assert all(p in message for p in phrases), message
        assert "Traceback" not in message and str(comfy_server.base_dir) not in message
        assert result.error.get("exception_type") == "concept_attention.errors.ConceptAttentionError"
