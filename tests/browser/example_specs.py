"""The example workflows of example_workflows/, as graphs built through the real UI.

tests/browser/make_examples.py creates each graph in the browser with the front end's own node
classes (so widget order, link format and version fields are exactly what ComfyUI saves), then
writes example_workflows/<name>.json and the template thumbnail <name>.jpg next to it. The
browser tier loads the saved files back through the UI (tests/browser/test_frontend.py).

A spec: nodes = [{key, type, pos, values (widget name -> value), size?, title?, properties?}],
links = [(from_key, output name, to_key, input name)], groups = [{title, pos, size, color?}],
thumbnail_nodes? (keys the thumbnail frames; the pack's nodes otherwise). `properties` go into the
node's saved properties: loaders carry `models` ([{name, url, directory}]) there as ComfyUI's
stock templates do, so the front end can offer the missing files for download.
"""

from __future__ import annotations

FLUX_MODELS_NOTE = """Models for this workflow (Flux.1-dev)

diffusion model  flux1-dev.safetensors
  -> ComfyUI/models/diffusion_models/
  from huggingface.co/black-forest-labs/FLUX.1-dev (or the Comfy-Org/flux1-dev repack)
VAE              ae.safetensors
  -> ComfyUI/models/vae/
  from the same FLUX.1-dev repository
text encoders    t5xxl_fp16.safetensors and clip_l.safetensors
  -> ComfyUI/models/text_encoders/
  from huggingface.co/comfyanonymous/flux_text_encoders
  (t5xxl_fp8_e4m3fn.safetensors works too, with less memory)

Concept Saliency works the same with Flux.1-schnell, Kontext and Fill:
pick their file in Load Diffusion Model.
"""

SD35_MODELS_NOTE = """Models for this workflow (Stable Diffusion 3.5)

checkpoint     sd3.5_large.safetensors
  -> ComfyUI/models/checkpoints/
  from huggingface.co/stabilityai/stable-diffusion-3.5-large
  (sd3.5_medium.safetensors and sd3.5_large_turbo.safetensors work as well)
text encoders  clip_l.safetensors, clip_g.safetensors, t5xxl_fp16.safetensors
  -> ComfyUI/models/text_encoders/
  from the text_encoders/ folder of the same repository

The checkpoint holds the model and its VAE; the three text encoders load with
TripleCLIPLoader (the checkpoint's own CLIP output is not used).
"""

FLUX2_KLEIN_MODELS_NOTE = """Models for this workflow (FLUX.2 [klein] 4B)

diffusion model
  flux-2-klein-4b.safetensors
  -> ComfyUI/models/diffusion_models/
text encoder (Load CLIP, type flux2)
  qwen_3_4b.safetensors
  -> ComfyUI/models/text_encoders/
  both from huggingface.co/Comfy-Org/
  flux2-klein (split_files/)
VAE
  flux2-vae.safetensors
  -> ComfyUI/models/vae/
  from huggingface.co/Comfy-Org/flux2-dev
  (split_files/vae/)

Klein 9B: flux-2-klein-9b-fp8.safetensors
(black-forest-labs/FLUX.2-klein-9b-fp8)
with qwen_3_8b_fp8mixed.safetensors
(Comfy-Org/flux2-klein-9B). The base
(undistilled) Klein models want about
20 steps and cfg 5 instead of 4 and 1.
Concept Saliency reads FLUX.2 [dev] too
(mistral_3_small_flux2 text encoder).
"""

NOTE_COLOR = {"color": "#432", "bgcolor": "#653"}


def _models(name: str, url: str, directory: str) -> dict:
    """A loader's `properties` naming the file it needs, as ComfyUI's stock templates do."""
    return {"models": [{"name": name, "url": url, "directory": directory}]}


def _flux_loaders(x: int = 0, y: int = 0) -> list[dict]:
    return [
        {"key": "unet", "type": "UNETLoader", "pos": [x, y], "size": [320, 82],
         "values": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        {"key": "clip", "type": "DualCLIPLoader", "pos": [x, y + 130], "size": [320, 130],
         "values": {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"}},
        {"key": "vae", "type": "VAELoader", "pos": [x, y + 310], "size": [320, 58],
         "values": {"vae_name": "ae.safetensors"}},
    ]


def _note(text: str, pos, size=(420, 300)) -> dict:
    return {"key": "note", "type": "Note", "pos": list(pos), "size": list(size), "values": {"text": text},
            **NOTE_COLOR}


FLUX_MASK_INPAINT = {
    "name": "flux_concept_mask_inpaint",
    "title": "Flux.1: mask a concept in an image and inpaint it",
    "nodes": [
        *_flux_loaders(0, 0),
        {"key": "image", "type": "LoadImage", "pos": [0, 430], "size": [320, 360], "values": {"image": "example.png"}},
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [320, 160],
         "values": {"concepts": "dog, grass, sky, tree"}},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [760, 0], "size": [340, 420],
         "values": {"layers": "last 10", "noise_level": 0.5}},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1160, 0], "size": [320, 320]},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [760, 480], "size": [340, 300],
         "values": {"concepts": "dog", "method": "mean", "grow": 16, "feather": 8.0}},
        {"key": "mask_preview", "type": "MaskPreview", "pos": [1160, 380], "size": [320, 320]},
        {"key": "prompt", "type": "CLIPTextEncode", "pos": [380, 220], "size": [320, 130],
         "values": {"text": "a red fox sitting on the grass, photo"}},
        {"key": "guidance", "type": "FluxGuidance", "pos": [380, 400], "size": [320, 58], "values": {"guidance": 3.5}},
        {"key": "negative", "type": "ConditioningZeroOut", "pos": [380, 510], "size": [320, 26]},
        {"key": "encode", "type": "VAEEncode", "pos": [380, 590], "size": [320, 46]},
        {"key": "noise_mask", "type": "SetLatentNoiseMask", "pos": [380, 690], "size": [320, 46]},
        {"key": "sampler", "type": "KSampler", "pos": [1540, 0], "size": [320, 262],
         "values": {"seed": 0, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        {"key": "decode", "type": "VAEDecode", "pos": [1540, 320], "size": [320, 46]},
        {"key": "composite", "type": "ImageCompositeMasked", "pos": [1540, 420], "size": [320, 150],
         "values": {"x": 0, "y": 0, "resize_source": False}},
        {"key": "save", "type": "SaveImage", "pos": [1920, 0], "size": [400, 460],
         "values": {"filename_prefix": "concept_inpaint"}},
        _note(FLUX_MODELS_NOTE + "\nHow to use: load your picture, list what is in it in Concept List "
              "(the thing to replace plus background concepts), pick the concept to replace in Saliency "
              "to Mask, describe the replacement in the prompt and run.", [0, 850], (700, 330)),
    ],
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("clip", "CLIP", "prompt", "clip"),
        ("unet", "MODEL", "saliency", "model"),
        ("concepts", "concepts", "saliency", "concepts"),
        ("image", "IMAGE", "saliency", "image"),
        ("vae", "VAE", "saliency", "vae"),
        ("saliency", "preview", "heatmaps", "images"),
        ("saliency", "saliency", "mask", "saliency"),
        ("image", "IMAGE", "mask", "image"),
        ("mask", "mask", "mask_preview", "mask"),
        ("prompt", "CONDITIONING", "guidance", "conditioning"),
        ("prompt", "CONDITIONING", "negative", "conditioning"),
        ("image", "IMAGE", "encode", "pixels"),
        ("vae", "VAE", "encode", "vae"),
        ("encode", "LATENT", "noise_mask", "samples"),
        ("mask", "mask", "noise_mask", "mask"),
        ("unet", "MODEL", "sampler", "model"),
        ("guidance", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("image", "IMAGE", "composite", "destination"),
        ("decode", "IMAGE", "composite", "source"),
        ("mask", "mask", "composite", "mask"),
        ("composite", "IMAGE", "save", "images"),
    ],
    "groups": [
        {"title": "1. find the concept", "pos": [370, -40], "size": [1120, 830], "color": "#3f789e"},
        {"title": "2. inpaint inside the mask", "pos": [1530, -40], "size": [800, 630], "color": "#8A8"},
    ],
}

FLUX_GENERATE_INSPECT = {
    "name": "flux_generate_and_inspect_concept_maps",
    "title": "Flux.1: generate a picture and see where each concept went",
    "nodes": [
        *_flux_loaders(0, 0),
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [320, 160],
         "values": {"concepts": "dragon, sun, mountains, sky, clouds"}},
        {"key": "patch", "type": "ConceptAttentionPatchModel", "pos": [380, 220], "size": [320, 250],
         "values": {"layers": "last 10", "start_percent": 0.0, "end_percent": 1.0}},
        {"key": "prompt", "type": "CLIPTextEncode", "pos": [760, 0], "size": [340, 150],
         "values": {"text": "a red dragon flying over snowy mountains at sunset, the sun low on the horizon, "
                            "dramatic clouds"}},
        {"key": "guidance", "type": "FluxGuidance", "pos": [760, 200], "size": [340, 58], "values": {"guidance": 3.5}},
        {"key": "negative", "type": "ConditioningZeroOut", "pos": [760, 310], "size": [340, 26]},
        {"key": "latent", "type": "EmptySD3LatentImage", "pos": [760, 390], "size": [340, 106],
         "values": {"width": 1024, "height": 1024, "batch_size": 1}},
        {"key": "sampler", "type": "KSampler", "pos": [1160, 0], "size": [320, 262],
         "values": {"seed": 42, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        {"key": "decode", "type": "VAEDecode", "pos": [1160, 320], "size": [320, 46]},
        {"key": "save", "type": "SaveImage", "pos": [1540, 0], "size": [400, 460],
         "values": {"filename_prefix": "concept_generation"}},
        {"key": "maps", "type": "ConceptAttentionSamplingSaliency", "pos": [1160, 420], "size": [320, 250]},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1540, 520], "size": [400, 400]},
        {"key": "save_maps", "type": "ConceptAttentionSaveSaliency", "pos": [1160, 730], "size": [320, 82],
         "values": {"filename_prefix": "concept_saliency/dragon"}},
        _note(FLUX_MODELS_NOTE + "\nHow to use: write the prompt and the concepts to look for, run. The "
              "picture is the same as without Concept Attention; Concept Saliency from Sampling shows "
              "each concept's map and a legend (click a concept to see its map large).",
              [0, 540], (700, 380)),
    ],
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("clip", "CLIP", "prompt", "clip"),
        ("unet", "MODEL", "patch", "model"),
        ("concepts", "concepts", "patch", "concepts"),
        ("prompt", "CONDITIONING", "guidance", "conditioning"),
        ("prompt", "CONDITIONING", "negative", "conditioning"),
        ("patch", "model", "sampler", "model"),
        ("guidance", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("latent", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
        ("patch", "model", "maps", "model"),
        ("sampler", "LATENT", "maps", "latent"),
        ("decode", "IMAGE", "maps", "image"),
        ("maps", "preview", "heatmaps", "images"),
        ("maps", "saliency", "save_maps", "saliency"),
    ],
    "groups": [],
}

SD35_REGIONAL_EDIT = {
    "name": "sd35_concept_mask_regional_edit",
    "title": "SD3.5: concept mask as the region of a regional prompt",
    "nodes": [
        {"key": "ckpt", "type": "CheckpointLoaderSimple", "pos": [0, 0], "size": [320, 98],
         "values": {"ckpt_name": "sd3.5_large.safetensors"}},
        {"key": "clip", "type": "TripleCLIPLoader", "pos": [0, 150], "size": [320, 106],
         "values": {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors",
                    "clip_name3": "t5xxl_fp16.safetensors"}},
        {"key": "image", "type": "LoadImage", "pos": [0, 310], "size": [320, 360], "values": {"image": "example.png"}},
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [320, 160],
         "values": {"concepts": "person, shirt, hair, background"}},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [760, 0], "size": [340, 420],
         "values": {"layers": "last 10", "noise_level": 0.5}},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1160, 0], "size": [320, 320]},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [760, 480], "size": [340, 300],
         "values": {"concepts": "shirt", "method": "otsu", "grow": 8, "feather": 12.0}},
        {"key": "mask_preview", "type": "MaskPreview", "pos": [1160, 380], "size": [320, 320]},
        {"key": "base_prompt", "type": "CLIPTextEncode", "pos": [380, 220], "size": [320, 130],
         "values": {"text": "a photo of a person, natural light"}},
        {"key": "region_prompt", "type": "CLIPTextEncode", "pos": [380, 400], "size": [320, 130],
         "values": {"text": "a red leather jacket"}},
        {"key": "negative", "type": "CLIPTextEncode", "pos": [380, 580], "size": [320, 110],
         "values": {"text": "blurry, low quality"}},
        {"key": "set_mask", "type": "ConditioningSetMask", "pos": [1540, 0], "size": [320, 106],
         "values": {"strength": 1.0, "set_cond_area": "default"}},
        {"key": "combine", "type": "ConditioningCombine", "pos": [1540, 160], "size": [320, 46]},
        {"key": "encode", "type": "VAEEncode", "pos": [1540, 260], "size": [320, 46]},
        {"key": "noise_mask", "type": "SetLatentNoiseMask", "pos": [1540, 360], "size": [320, 46]},
        {"key": "sampler", "type": "KSampler", "pos": [1920, 0], "size": [320, 262],
         "values": {"seed": 0, "steps": 28, "cfg": 4.5, "sampler_name": "dpmpp_2m", "scheduler": "sgm_uniform",
                    "denoise": 0.8}},
        {"key": "decode", "type": "VAEDecode", "pos": [1920, 320], "size": [320, 46]},
        {"key": "save", "type": "SaveImage", "pos": [2300, 0], "size": [400, 460],
         "values": {"filename_prefix": "concept_regional_edit"}},
        _note(SD35_MODELS_NOTE + "\nHow to use: load your picture, list its parts in Concept List, choose "
              "the part to change in Saliency to Mask and describe the change in the region prompt. The "
              "mask limits both the regional prompt (ConditioningSetMask) and the repainted area "
              "(SetLatentNoiseMask); lower the denoise to keep more of the original.",
              [0, 740], (700, 420)),
    ],
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("clip", "CLIP", "base_prompt", "clip"),
        ("clip", "CLIP", "region_prompt", "clip"),
        ("clip", "CLIP", "negative", "clip"),
        ("ckpt", "MODEL", "saliency", "model"),
        ("concepts", "concepts", "saliency", "concepts"),
        ("image", "IMAGE", "saliency", "image"),
        ("ckpt", "VAE", "saliency", "vae"),
        ("base_prompt", "CONDITIONING", "saliency", "conditioning"),
        ("saliency", "preview", "heatmaps", "images"),
        ("saliency", "saliency", "mask", "saliency"),
        ("image", "IMAGE", "mask", "image"),
        ("mask", "mask", "mask_preview", "mask"),
        ("region_prompt", "CONDITIONING", "set_mask", "conditioning"),
        ("mask", "mask", "set_mask", "mask"),
        ("base_prompt", "CONDITIONING", "combine", "conditioning_1"),
        ("set_mask", "CONDITIONING", "combine", "conditioning_2"),
        ("image", "IMAGE", "encode", "pixels"),
        ("ckpt", "VAE", "encode", "vae"),
        ("encode", "LATENT", "noise_mask", "samples"),
        ("mask", "mask", "noise_mask", "mask"),
        ("ckpt", "MODEL", "sampler", "model"),
        ("combine", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("ckpt", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "save", "images"),
    ],
    "groups": [],
}

FLUX_ARGMAX_SEGMENTATION = {
    "name": "flux_multi_concept_segmentation_argmax",
    "title": "Flux.1: split a picture into concepts (argmax segmentation)",
    "nodes": [
        *_flux_loaders(0, 0),
        {"key": "image", "type": "LoadImage", "pos": [0, 430], "size": [320, 360], "values": {"image": "example.png"}},
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [320, 160],
         "values": {"concepts": "person, hair, shirt, background"}},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [380, 220], "size": [340, 420],
         "values": {"layers": "last 10", "noise_level": 0.5, "samples": 2}},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [380, 700], "size": [340, 340]},
        {"key": "mask_a", "type": "ConceptAttentionSaliencyToMask", "pos": [780, 0], "size": [320, 300],
         "values": {"concepts": "person", "method": "argmax"}},
        {"key": "mask_b", "type": "ConceptAttentionSaliencyToMask", "pos": [780, 360], "size": [320, 300],
         "values": {"concepts": "hair, shirt", "method": "argmax"}},
        {"key": "mask_c", "type": "ConceptAttentionSaliencyToMask", "pos": [780, 720], "size": [320, 300],
         "values": {"concepts": "background", "method": "argmax"}},
        {"key": "preview_a", "type": "MaskPreview", "pos": [1160, 0], "size": [300, 300]},
        {"key": "preview_b", "type": "MaskPreview", "pos": [1160, 360], "size": [300, 300]},
        {"key": "preview_c", "type": "MaskPreview", "pos": [1160, 720], "size": [300, 300]},
        _note(FLUX_MODELS_NOTE + "\nHow to use: list every region of the picture in Concept List (include "
              "the background). With method 'argmax' each pixel belongs to the concept with the highest "
              "score, so the masks do not overlap and together cover the picture; a Saliency to Mask "
              "node with several concepts ('hair, shirt') gives their union.",
              [0, 850], (360, 560)),
    ],
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("unet", "MODEL", "saliency", "model"),
        ("concepts", "concepts", "saliency", "concepts"),
        ("image", "IMAGE", "saliency", "image"),
        ("vae", "VAE", "saliency", "vae"),
        ("saliency", "preview", "heatmaps", "images"),
        ("saliency", "saliency", "mask_a", "saliency"),
        ("saliency", "saliency", "mask_b", "saliency"),
        ("saliency", "saliency", "mask_c", "saliency"),
        ("image", "IMAGE", "mask_a", "image"),
        ("image", "IMAGE", "mask_b", "image"),
        ("image", "IMAGE", "mask_c", "image"),
        ("mask_a", "mask", "preview_a", "mask"),
        ("mask_b", "mask", "preview_b", "mask"),
        ("mask_c", "mask", "preview_c", "mask"),
    ],
    "groups": [],
}

KLEIN_REPO = "https://huggingface.co/Comfy-Org/flux2-klein/resolve/main/split_files"
FLUX2_VAE_URL = "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors"

FLUX2_KLEIN_MASK_EDIT = {
    "name": "flux2_klein_concept_mask_edit",
    "title": "Flux.2 Klein: mask a concept in an image and edit it",
    "nodes": [
        {"key": "unet", "type": "UNETLoader", "pos": [0, 0], "size": [320, 82],
         "values": {"unet_name": "flux-2-klein-4b.safetensors", "weight_dtype": "default"},
         "properties": _models("flux-2-klein-4b.safetensors",
                               f"{KLEIN_REPO}/diffusion_models/flux-2-klein-4b.safetensors", "diffusion_models")},
        {"key": "clip", "type": "CLIPLoader", "pos": [0, 130], "size": [320, 106],
         "values": {"clip_name": "qwen_3_4b.safetensors", "type": "flux2"},
         "properties": _models("qwen_3_4b.safetensors", f"{KLEIN_REPO}/text_encoders/qwen_3_4b.safetensors",
                               "text_encoders")},
        {"key": "vae", "type": "VAELoader", "pos": [0, 290], "size": [320, 58],
         "values": {"vae_name": "flux2-vae.safetensors"},
         "properties": _models("flux2-vae.safetensors", FLUX2_VAE_URL, "vae")},
        {"key": "image", "type": "LoadImage", "pos": [0, 400], "size": [320, 360], "values": {"image": "example.png"}},
        # Klein's templates scale with ImageScaleToTotalPixels, which needs kornia (one of ComfyUI's
        # optional requirements); this stock node needs nothing and also keeps the picture near 1 MP.
        {"key": "scale", "type": "ImageScaleToMaxDimension", "pos": [0, 820], "size": [320, 82],
         "values": {"upscale_method": "lanczos", "largest_size": 1024}},
        # 1. find the concept. Nothing below Concept Saliency: it grows after a run (legend + maps).
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [340, 160],
         "values": {"concepts": "cat, sofa, cushion, wall"}},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [760, 0], "size": [340, 420],
         "values": {"layers": "last 10", "noise_level": 0.5}},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1160, 0], "size": [320, 320]},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [1160, 380], "size": [340, 300],
         "values": {"concepts": "cat", "method": "mean", "grow": 24, "feather": 8.0}},
        {"key": "mask_preview", "type": "MaskPreview", "pos": [1160, 740], "size": [320, 320]},
        # 2. edit inside the mask: Klein's reference-latent edit, sampled as ComfyUI's Klein templates do.
        {"key": "prompt", "type": "CLIPTextEncode", "pos": [1560, 0], "size": [340, 150], "title": "Edit prompt",
         "values": {"text": "Replace the cat with a sleeping corgi puppy. Keep the sofa, the light and the "
                            "style of the photo."}},
        {"key": "negative", "type": "ConditioningZeroOut", "pos": [1560, 210], "size": [340, 26]},
        {"key": "encode", "type": "VAEEncode", "pos": [1560, 290], "size": [340, 46]},
        {"key": "reference", "type": "ReferenceLatent", "pos": [1560, 390], "size": [340, 46]},
        {"key": "negative_reference", "type": "ReferenceLatent", "pos": [1560, 490], "size": [340, 46]},
        {"key": "noise_mask", "type": "SetLatentNoiseMask", "pos": [1560, 590], "size": [340, 46]},
        {"key": "size", "type": "GetImageSize", "pos": [1560, 690], "size": [340, 66]},
        {"key": "noise", "type": "RandomNoise", "pos": [1960, 0], "size": [320, 82], "values": {"noise_seed": 0}},
        {"key": "sampler_select", "type": "KSamplerSelect", "pos": [1960, 130], "size": [320, 58],
         "values": {"sampler_name": "euler"}},
        {"key": "scheduler", "type": "Flux2Scheduler", "pos": [1960, 240], "size": [320, 106],
         "values": {"steps": 4}},
        {"key": "guider", "type": "CFGGuider", "pos": [1960, 400], "size": [320, 98], "values": {"cfg": 1.0}},
        {"key": "sampler", "type": "SamplerCustomAdvanced", "pos": [1960, 550], "size": [320, 106]},
        {"key": "decode", "type": "VAEDecode", "pos": [1960, 710], "size": [320, 46]},
        {"key": "composite", "type": "ImageCompositeMasked", "pos": [1960, 810], "size": [320, 150],
         "values": {"x": 0, "y": 0, "resize_source": False}},
        {"key": "save", "type": "SaveImage", "pos": [2340, 0], "size": [400, 460],
         "values": {"filename_prefix": "concept_klein_edit"}},
        _note(FLUX2_KLEIN_MODELS_NOTE + "\nHow to use: load your picture; list what is in it in Concept "
              "List (the thing to change plus background concepts); pick the concept to change in Saliency "
              "to Mask; say what it should become in the edit prompt; run. Klein sees the whole picture as "
              "its reference (Set Reference Latent) and repaints only the masked latent (Set Latent Noise "
              "Mask); the result is pasted back onto the picture inside the mask.", [380, 220], (340, 560)),
    ],
    "links": [
        ("image", "IMAGE", "scale", "image"),
        ("clip", "CLIP", "concepts", "clip"),
        ("unet", "MODEL", "saliency", "model"),
        ("concepts", "concepts", "saliency", "concepts"),
        ("scale", "IMAGE", "saliency", "image"),
        ("vae", "VAE", "saliency", "vae"),
        ("saliency", "preview", "heatmaps", "images"),
        ("saliency", "saliency", "mask", "saliency"),
        ("scale", "IMAGE", "mask", "image"),
        ("mask", "mask", "mask_preview", "mask"),
        ("clip", "CLIP", "prompt", "clip"),
        ("prompt", "CONDITIONING", "negative", "conditioning"),
        ("scale", "IMAGE", "encode", "pixels"),
        ("vae", "VAE", "encode", "vae"),
        ("prompt", "CONDITIONING", "reference", "conditioning"),
        ("encode", "LATENT", "reference", "latent"),
        ("negative", "CONDITIONING", "negative_reference", "conditioning"),
        ("encode", "LATENT", "negative_reference", "latent"),
        ("encode", "LATENT", "noise_mask", "samples"),
        ("mask", "mask", "noise_mask", "mask"),
        ("scale", "IMAGE", "size", "image"),
        ("size", "width", "scheduler", "width"),
        ("size", "height", "scheduler", "height"),
        ("unet", "MODEL", "guider", "model"),
        ("reference", "CONDITIONING", "guider", "positive"),
        ("negative_reference", "CONDITIONING", "guider", "negative"),
        ("noise", "NOISE", "sampler", "noise"),
        ("guider", "GUIDER", "sampler", "guider"),
        ("sampler_select", "SAMPLER", "sampler", "sampler"),
        ("scheduler", "SIGMAS", "sampler", "sigmas"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        ("sampler", "output", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("scale", "IMAGE", "composite", "destination"),
        ("decode", "IMAGE", "composite", "source"),
        ("mask", "mask", "composite", "mask"),
        ("composite", "IMAGE", "save", "images"),
    ],
    "groups": [
        {"title": "1. find the concept", "pos": [370, -80], "size": [1140, 1150], "color": "#3f789e"},
        {"title": "2. edit inside the mask (Klein reference edit)", "pos": [1550, -80], "size": [1200, 1050],
         "color": "#8A8"},
    ],
}

EXAMPLES = [FLUX_MASK_INPAINT, FLUX_GENERATE_INSPECT, SD35_REGIONAL_EDIT, FLUX_ARGMAX_SEGMENTATION,
            FLUX2_KLEIN_MASK_EDIT]

# What the browser tier checks in each saved workflow's prompt (graphToPrompt): pack node types
# that must be there, and widget values that define the example.
EXPECTED = {
    "flux_concept_mask_inpaint": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask",
                  "UNETLoader", "DualCLIPLoader", "VAELoader", "SetLatentNoiseMask", "KSampler"},
        "files": {"flux1-dev.safetensors", "ae.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors"},
    },
    "flux_generate_and_inspect_concept_maps": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionPatchModel", "ConceptAttentionSamplingSaliency",
                  "KSampler", "UNETLoader", "DualCLIPLoader"},
        "files": {"flux1-dev.safetensors", "ae.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors"},
    },
    "sd35_concept_mask_regional_edit": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask",
                  "ConditioningSetMask", "TripleCLIPLoader", "CheckpointLoaderSimple"},
        "files": {"sd3.5_large.safetensors", "clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors"},
    },
    "flux_multi_concept_segmentation_argmax": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask"},
        "files": {"flux1-dev.safetensors", "ae.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors"},
        "mask_method": "argmax",
    },
    "flux2_klein_concept_mask_edit": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask",
                  "UNETLoader", "CLIPLoader", "VAELoader", "LoadImage", "ReferenceLatent", "SetLatentNoiseMask",
                  "SamplerCustomAdvanced", "SaveImage"},
        "files": {"flux-2-klein-4b.safetensors", "qwen_3_4b.safetensors", "flux2-vae.safetensors"},
        "widgets": {"CLIPLoader": {"type": "flux2"}},
        # The loaders name their files with a download URL and the models/ folder they go to.
        "models": {"UNETLoader": ("flux-2-klein-4b.safetensors", "diffusion_models"),
                   "CLIPLoader": ("qwen_3_4b.safetensors", "text_encoders"),
                   "VAELoader": ("flux2-vae.safetensors", "vae")},
        # Concept Saliency grows after a run (legend + maps): nothing sits below it in its column.
        "saliency_room": 600,
    },
}
