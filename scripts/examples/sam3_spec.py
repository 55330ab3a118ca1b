"""The SAM 3 example: concept maps of a loaded picture (Flux.1) -> Saliency to SAM 3 Prompts -> ComfyUI's stock SAM3
Detect (Load Checkpoint with `sam3.1_multiplex_fp16.safetensors` from Comfy-Org/sam3.1, into models/checkpoints, with
its `properties.models` link, as ComfyUI's SAM 3 workflows load it) -> Grow Mask -> the inpainting of the Flux mask
example (VAE Encode + Set Latent Noise Mask -> KSampler -> VAE Decode -> pasted back inside the mask).

A spec as scripts/examples/specs.py describes; registered there (EXAMPLES, EXPECTED).
"""

from __future__ import annotations

from .notes import FLUX1_DEV_URL, FLUX_AE_URL, FLUX_TEXT_ENCODERS
from .parts import (
    columns,
    concept_list,
    decode_links,
    flux_loaders,
    models,
    node,
    note,
    saliency_links,
    saliency_node,
    sampler,
    save_image,
)

SAM3_FILE = "sam3.1_multiplex_fp16.safetensors"
SAM3_URL = f"https://huggingface.co/Comfy-Org/sam3.1/resolve/main/checkpoints/{SAM3_FILE}"

SAM3_NOTE = f"""# Concept mask, made crisp by SAM 3, then inpainted

ConceptAttention finds *which* part of the picture is the `dog`, on the model's coarse token grid (16 px on
Flux.1); SAM 3 draws its exact outline. ComfyUI runs SAM 3 itself (SAM3 Detect); this pack tells it where to look.

1. Pick a picture in Load Image and name what is in it in Concept List (add the background: `grass, sky`).
2. Concept Saliency maps every concept. Saliency to SAM 3 Prompts turns the `dog` into a box around its largest
   region and points at its strongest spots, with negative points at the other concepts' peaks.
3. SAM3 Detect segments the picture inside that box and at those points: a mask with the dog's real edges.
   Grow Mask widens it a little, so the new content blends in.
4. The inpainting repaints only inside the mask (the prompt says what goes there) and pastes the result back.

Without SAM 3 the pack's own mask node gives a soft, approximate region, enough for regional prompts and for things
with no crisp edge (sky, fog, light); SAM 3 gives a cut-out with exact edges, and for a video it tracks the first
frame's objects through the clip: docs/sam3.md says when to use which.

## Models

| file | folder |
|---|---|
| [flux1-dev.safetensors]({FLUX1_DEV_URL}) | `ComfyUI/models/diffusion_models/` |
| [t5xxl_fp16.safetensors]({FLUX_TEXT_ENCODERS}/t5xxl_fp16.safetensors) | `ComfyUI/models/text_encoders/` |
| [clip_l.safetensors]({FLUX_TEXT_ENCODERS}/clip_l.safetensors) | `ComfyUI/models/text_encoders/` |
| [ae.safetensors]({FLUX_AE_URL}) | `ComfyUI/models/vae/` |
| [{SAM3_FILE}]({SAM3_URL}) (Load Checkpoint) | `ComfyUI/models/checkpoints/` |
"""

SAM3_REFINE_INPAINT = {
    "name": "flux_sam3_concept_mask_inpaint",
    "file": "Flux.1 SAM 3 Concept Inpaint",
    "title": "Flux.1: find a concept, make its mask crisp with SAM 3, inpaint it",
    "nodes": columns(
        # The loaders (SAM 3.1 through Load Checkpoint) and the picture, with its latent for the inpainting
        [*flux_loaders(FLUX1_DEV_URL, FLUX_TEXT_ENCODERS, FLUX_AE_URL),
         node("sam", "CheckpointLoaderSimple", size=[320, 98], title="Load Checkpoint (SAM 3.1)",
              properties=models((SAM3_FILE, SAM3_URL, "checkpoints")), ckpt_name=SAM3_FILE),
         node("image", "LoadImage", size=[320, 320], image="example.png"),
         node("encode", "VAEEncode", size=[320, 46]),
         node("noise_mask", "SetLatentNoiseMask", size=[320, 46])],
        # The concepts and their maps (Concept Saliency last: it grows after a run)
        [concept_list("dog, grass, sky, tree"), saliency_node()],
        # SAM 3 outlines the concept the maps found
        [node("prompts", "ConceptAttentionSaliencyToSAM3Prompts", size=[340, 350], concepts="dog",
              method="mean", max_boxes=1, points=3, negative_points=1),
         node("detect", "SAM3_Detect", size=[340, 206], threshold=0.5, refine_iterations=2, individual_masks=False),
         node("grow", "GrowMask", size=[340, 82], expand=8, tapered_corners=True),
         node("mask_preview", "MaskPreview", size=[340, 320])],
        # The inpainting inside the mask (cfg 1: Flux's guidance is the model's default, 3.5)
        [node("prompt", "CLIPTextEncode", size=[320, 130], text="a red fox sitting on the grass, photo"),
         sampler(seed=0, steps=20, cfg=1.0), node("decode", "VAEDecode", size=[320, 46]),
         node("composite", "ImageCompositeMasked", size=[320, 150], x=0, y=0, resize_source=False),
         save_image("concept_sam3_inpaint", height=300)],
        note_node=note(SAM3_NOTE)),
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("clip", "CLIP", "prompt", "clip"),
        *saliency_links(),
        ("saliency", "saliency", "prompts", "saliency"),
        ("image", "IMAGE", "prompts", "image"),
        ("sam", "MODEL", "detect", "model"),
        ("image", "IMAGE", "detect", "image"),
        ("prompts", "bboxes", "detect", "bboxes"),
        ("prompts", "positive_coords", "detect", "positive_coords"),
        ("prompts", "negative_coords", "detect", "negative_coords"),
        ("detect", "masks", "grow", "mask"),
        ("grow", "MASK", "mask_preview", "mask"),
        ("image", "IMAGE", "encode", "pixels"),
        ("vae", "VAE", "encode", "vae"),
        ("encode", "LATENT", "noise_mask", "samples"),
        ("grow", "MASK", "noise_mask", "mask"),
        ("unet", "MODEL", "sampler", "model"),
        ("prompt", "CONDITIONING", "sampler", "positive"),
        ("prompt", "CONDITIONING", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        *decode_links(),
        ("image", "IMAGE", "composite", "destination"),
        ("decode", "IMAGE", "composite", "source"),
        ("grow", "MASK", "composite", "mask"),
        ("composite", "IMAGE", "save", "images"),
    ],
    "groups": [],
    # No mask tile: a random-weight SAM 3 outlines all of the tiny picture or none of it (after Grow Mask), whatever
    # its seed; the card shows the picture, the regions and the map SAM 3 is prompted from.
    "thumbnail": {"picture": "image", "saliency": "saliency", "concept": "dog"},
}

SAM3_EXPECTED = {
    "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToSAM3Prompts",
              "SAM3_Detect", "CheckpointLoaderSimple", "UNETLoader", "DualCLIPLoader", "VAELoader", "LoadImage",
              "GrowMask", "SetLatentNoiseMask", "KSampler", "ImageCompositeMasked"},
    "files": {"flux1-dev.safetensors", "ae.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors", SAM3_FILE},
    "models": {"UNETLoader": ("flux1-dev.safetensors", "diffusion_models"),
               "DualCLIPLoader": [("t5xxl_fp16.safetensors", "text_encoders"), ("clip_l.safetensors", "text_encoders")],
               "VAELoader": ("ae.safetensors", "vae"),
               "CheckpointLoaderSimple": (SAM3_FILE, "checkpoints")},
    "saliency_room": 600,
}
