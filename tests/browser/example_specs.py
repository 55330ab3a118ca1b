"""The example workflows of example_workflows/, as graphs built through the real UI.

tests/browser/make_examples.py creates each graph in the browser with the front end's own node
classes (so widget order, link format and version fields are exactly what ComfyUI saves), then
writes example_workflows/<name>.json and the template thumbnail <name>.jpg next to it. The
browser tier loads the saved files back through the UI (tests/browser/test_frontend.py).

A spec: name (the key of EXPECTED), file (the saved file's name without .json: ComfyUI's template
browser shows it as the template's title, so it reads as a title and fits a card), title,
nodes = [{key, type, pos, values (widget name -> value), size?, title?, properties?}],
links = [(from_key, output name, to_key, input name)], groups = [{title, pos, size, color?}],
thumbnail? ({picture, saliency, concept, mask?}: node keys whose results make the thumbnail, after a
run on tiny models; found from the node types otherwise). `properties` go into the
node's saved properties: loaders carry `models` ([{name, url, directory}]) there as ComfyUI's
stock templates do, so the front end can offer the missing files for download.
"""

from __future__ import annotations

# File names, folders and links as ComfyUI's own templates give them (comfyui-workflow-templates:
# flux_dev_full_text_to_image.json and flux_fill_inpaint_example.json for Flux.1). The Stable Diffusion
# 3.5 files are gated on Hugging Face (a licence to accept, then a login): no link can fetch them.
FLUX1_DEV_URL = "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors"
FLUX_TEXT_ENCODERS = "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main"
FLUX_AE_URL = "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors"
SD35_LARGE_PAGE = "https://huggingface.co/stabilityai/stable-diffusion-3.5-large"
SD35_FP8_URL = ("https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/"
                "sd3.5_large_fp8_scaled.safetensors")

FLUX_MODELS_NOTE = f"""## Models

Put these files in these folders (Load Diffusion Model, Load CLIP (Dual) and Load VAE offer to
download them when they are missing):

| file | folder |
|---|---|
| [flux1-dev.safetensors]({FLUX1_DEV_URL}) | `ComfyUI/models/diffusion_models/` |
| [t5xxl_fp16.safetensors]({FLUX_TEXT_ENCODERS}/t5xxl_fp16.safetensors) | `ComfyUI/models/text_encoders/` |
| [clip_l.safetensors]({FLUX_TEXT_ENCODERS}/clip_l.safetensors) | `ComfyUI/models/text_encoders/` |
| [ae.safetensors]({FLUX_AE_URL}) | `ComfyUI/models/vae/` |

With less memory: [t5xxl_fp8_e4m3fn_scaled.safetensors]({FLUX_TEXT_ENCODERS}/t5xxl_fp8_e4m3fn_scaled.safetensors).
Flux.1-schnell, Kontext and Fill work the same: pick their file in Load Diffusion Model.
"""

SD35_MODELS_NOTE = f"""## Models

The Stable Diffusion 3.5 files are **gated**: accept the licence on
[stabilityai/stable-diffusion-3.5-large]({SD35_LARGE_PAGE}) while logged in to Hugging Face, then
download them there (no direct link works without your login).

| file | where from | folder |
|---|---|---|
| sd3.5_large.safetensors (or sd3.5_medium, sd3.5_large_turbo) | the gated repository | `ComfyUI/models/checkpoints/` |
| clip_g.safetensors | its `text_encoders/` (gated) | `ComfyUI/models/text_encoders/` |
| [clip_l.safetensors]({FLUX_TEXT_ENCODERS}/clip_l.safetensors) | public | `ComfyUI/models/text_encoders/` |
| [t5xxl_fp16.safetensors]({FLUX_TEXT_ENCODERS}/t5xxl_fp16.safetensors) | public | `ComfyUI/models/text_encoders/` |

The checkpoint holds the model and its VAE; the three text encoders load in TripleCLIPLoader.
Without a login: ComfyUI's own SD3.5 templates use
[sd3.5_large_fp8_scaled.safetensors]({SD35_FP8_URL}) (Comfy-Org/stable-diffusion-3.5-fp8, in
`models/checkpoints/`), which holds its text encoders too: pick it in Load Checkpoint and connect
Load Checkpoint's CLIP output where TripleCLIPLoader's goes.
"""

FLUX_MASK_INPAINT_NOTE = """# Flux.1: mask a concept and inpaint it

1. Load your picture in Load Image.
2. In Concept List, name the thing to replace and the rest of the scene (`dog, grass, sky, tree`).
3. In Saliency to Mask, click the concept to replace (`dog`); `grow` and `feather` widen and soften
   the mask's edge.
4. Describe the replacement in the prompt and run. Set Latent Noise Mask repaints only the masked
   latent and Image Composite Masked pastes the result back, so nothing outside the mask changes.

Concept Saliency shows where it found each concept: the regions in the legend's colours, one map per
concept on a shared 0-1 scale; Preview Mask shows the mask.

""" + FLUX_MODELS_NOTE

FLUX_GENERATE_INSPECT_NOTE = """# Flux.1: generate a picture and see where each concept went

1. Write the prompt, and in Concept List the concepts to follow (`dragon, sun, mountains, sky, clouds`).
2. Run. Concept Attention (Generation) lets the KSampler record the maps; the picture is the same as
   without it.
3. Concept Saliency from Sampling shows the regions (each in its concept's legend colour) and one map
   per concept; click a concept in its legend to see its map large. Save Saliency keeps the maps.
   A new seed gives a new picture and new maps.

""" + FLUX_MODELS_NOTE

SD35_REGIONAL_EDIT_NOTE = """# SD3.5: a concept's mask as the region of a prompt

1. Load your picture; list its parts in Concept List (`person, shirt, hair, background`).
2. Pick the part to change in Saliency to Mask (`shirt`, method `otsu`).
3. Describe the change in the region prompt (`a red leather jacket`) and run. Conditioning (Set Mask)
   limits that prompt to the mask, Conditioning (Combine) adds it to the base prompt, and Set Latent
   Noise Mask keeps the rest of the picture. Lower the KSampler's `denoise` to keep more of the original.

""" + SD35_MODELS_NOTE

FLUX_ARGMAX_NOTE = """# Flux.1: split a picture into concepts

1. List every region of the picture in Concept List, the background included.
2. With method `argmax`, each pixel belongs to the concept with the highest score (the paper's
   multi-class segmentation): the masks never overlap and together cover the picture. One Saliency to
   Mask with several concepts (`hair, shirt`) gives their union.
3. Run. Concept Saliency's first panel shows all regions at once in the legend's colours; each Preview
   Mask shows one segment.

""" + FLUX_MODELS_NOTE

NOTE_COLOR = {"color": "#432", "bgcolor": "#653"}


def _models(name: str, url: str, directory: str) -> dict:
    """A loader's `properties` naming the file it needs, as ComfyUI's stock templates do."""
    return {"models": [{"name": name, "url": url, "directory": directory}]}


def _flux_loaders(x: int = 0, y: int = 0) -> list[dict]:
    return [
        {"key": "unet", "type": "UNETLoader", "pos": [x, y], "size": [320, 82],
         "values": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"},
         "properties": _models("flux1-dev.safetensors", FLUX1_DEV_URL, "diffusion_models")},
        {"key": "clip", "type": "DualCLIPLoader", "pos": [x, y + 130], "size": [320, 130],
         "values": {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"},
         "properties": {"models": [
             {"name": "t5xxl_fp16.safetensors", "url": f"{FLUX_TEXT_ENCODERS}/t5xxl_fp16.safetensors",
              "directory": "text_encoders"},
             {"name": "clip_l.safetensors", "url": f"{FLUX_TEXT_ENCODERS}/clip_l.safetensors",
              "directory": "text_encoders"}]}},
        {"key": "vae", "type": "VAELoader", "pos": [x, y + 310], "size": [320, 58],
         "values": {"vae_name": "ae.safetensors"},
         "properties": _models("ae.safetensors", FLUX_AE_URL, "vae")},
    ]


def _note(text: str, pos, size=(420, 300)) -> dict:
    """A Markdown Note (links and tables render), as ComfyUI's stock templates have."""
    return {"key": "note", "type": "MarkdownNote", "pos": list(pos), "size": list(size), "values": {"text": text},
            **NOTE_COLOR}


def _markdown_note(text: str, pos, size=(420, 300)) -> dict:
    """A Markdown Note (links and tables render), as ComfyUI's stock templates have."""
    return {"key": "note", "type": "MarkdownNote", "pos": list(pos), "size": list(size), "values": {"text": text},
            **NOTE_COLOR}


# Concept Saliency (and Concept Saliency from Sampling) grow after a run: legend and maps. Each sits
# at its post-run size with the legend's largest growth (tests/browser: example_runs.py) free below it.
SALIENCY_SIZE = [340, 760]
SAMPLING_SALIENCY_SIZE = [320, 520]

FLUX_MASK_INPAINT = {
    "name": "flux_concept_mask_inpaint",
    "file": "Flux.1 Concept Mask Inpaint",
    "title": "Flux.1: mask a concept in an image and inpaint it",
    "nodes": [
        _note(FLUX_MASK_INPAINT_NOTE, [-620, 0], (560, 800)),
        *_flux_loaders(0, 0),
        {"key": "image", "type": "LoadImage", "pos": [0, 430], "size": [320, 360], "values": {"image": "example.png"}},
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [320, 160],
         "values": {"concepts": "dog, grass, sky, tree"}},
        {"key": "prompt", "type": "CLIPTextEncode", "pos": [380, 220], "size": [320, 130],
         "values": {"text": "a red fox sitting on the grass, photo"}},
        {"key": "guidance", "type": "FluxGuidance", "pos": [380, 400], "size": [320, 58], "values": {"guidance": 3.5}},
        {"key": "negative", "type": "ConditioningZeroOut", "pos": [380, 510], "size": [320, 26]},
        {"key": "encode", "type": "VAEEncode", "pos": [380, 590], "size": [320, 46]},
        {"key": "noise_mask", "type": "SetLatentNoiseMask", "pos": [380, 690], "size": [320, 46]},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [760, 0], "size": SALIENCY_SIZE,
         "values": {"layers": "last 10", "noise_level": 0.5}},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1160, 0], "size": [320, 320]},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [1160, 380], "size": [340, 300],
         "values": {"concepts": "dog", "method": "mean", "grow": 16, "feather": 8.0}},
        {"key": "mask_preview", "type": "MaskPreview", "pos": [1160, 740], "size": [320, 320]},
        {"key": "sampler", "type": "KSampler", "pos": [1560, 0], "size": [320, 262],
         "values": {"seed": 0, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        {"key": "decode", "type": "VAEDecode", "pos": [1560, 320], "size": [320, 46]},
        {"key": "composite", "type": "ImageCompositeMasked", "pos": [1560, 420], "size": [320, 150],
         "values": {"x": 0, "y": 0, "resize_source": False}},
        {"key": "save", "type": "SaveImage", "pos": [1940, 0], "size": [400, 460],
         "values": {"filename_prefix": "concept_inpaint"}},
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
        {"title": "1. find the concept", "pos": [370, -80], "size": [1140, 1180], "color": "#3f789e"},
        {"title": "2. inpaint inside the mask", "pos": [1550, -80], "size": [800, 660], "color": "#8A8"},
    ],
    # the thumbnail: the picture, its regions, the map of the masked concept, the mask
    "thumbnail": {"picture": "image", "saliency": "saliency", "concept": "dog", "mask": "mask_preview"},
}

FLUX_GENERATE_INSPECT = {
    "name": "flux_generate_and_inspect_concept_maps",
    "file": "Flux.1 Generation Concept Maps",
    "title": "Flux.1: generate a picture and see where each concept went",
    "nodes": [
        _note(FLUX_GENERATE_INSPECT_NOTE, [-620, 0], (560, 760)),
        *_flux_loaders(0, 0),
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [320, 160],
         "values": {"concepts": "dragon, sun, mountains, sky, clouds"}},
        {"key": "patch", "type": "ConceptAttentionPatchModel", "pos": [380, 220], "size": [320, 260],
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
        {"key": "maps", "type": "ConceptAttentionSamplingSaliency", "pos": [1160, 420], "size": SAMPLING_SALIENCY_SIZE},
        {"key": "save_maps", "type": "ConceptAttentionSaveSaliency", "pos": [1160, 1060], "size": [320, 82],
         "values": {"filename_prefix": "concept_saliency/dragon"}},
        {"key": "save", "type": "SaveImage", "pos": [1540, 0], "size": [400, 460],
         "values": {"filename_prefix": "concept_generation"}},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1540, 520], "size": [400, 400]},
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
    "thumbnail": {"picture": "save", "saliency": "maps", "concept": "dragon"},
}

SD35_REGIONAL_EDIT = {
    "name": "sd35_concept_mask_regional_edit",
    "file": "SD3.5 Regional Edit by Concept",
    "title": "SD3.5: concept mask as the region of a regional prompt",
    "nodes": [
        _note(SD35_REGIONAL_EDIT_NOTE, [-620, 0], (560, 860)),
        {"key": "ckpt", "type": "CheckpointLoaderSimple", "pos": [0, 0], "size": [320, 98],
         "values": {"ckpt_name": "sd3.5_large.safetensors"}},
        {"key": "clip", "type": "TripleCLIPLoader", "pos": [0, 150], "size": [320, 106],
         "values": {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors",
                    "clip_name3": "t5xxl_fp16.safetensors"},
         # clip_g is in the gated repository: no link for it (the Note says where it comes from)
         "properties": {"models": [
             {"name": "clip_l.safetensors", "url": f"{FLUX_TEXT_ENCODERS}/clip_l.safetensors",
              "directory": "text_encoders"},
             {"name": "t5xxl_fp16.safetensors", "url": f"{FLUX_TEXT_ENCODERS}/t5xxl_fp16.safetensors",
              "directory": "text_encoders"}]}},
        {"key": "image", "type": "LoadImage", "pos": [0, 310], "size": [320, 360], "values": {"image": "example.png"}},
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [320, 160],
         "values": {"concepts": "person, shirt, hair, background"}},
        {"key": "base_prompt", "type": "CLIPTextEncode", "pos": [380, 220], "size": [320, 130],
         "values": {"text": "a photo of a person, natural light"}},
        {"key": "region_prompt", "type": "CLIPTextEncode", "pos": [380, 400], "size": [320, 130],
         "values": {"text": "a red leather jacket"}},
        {"key": "negative", "type": "CLIPTextEncode", "pos": [380, 580], "size": [320, 110],
         "values": {"text": "blurry, low quality"}},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [760, 0], "size": SALIENCY_SIZE,
         "values": {"layers": "last 10", "noise_level": 0.5}},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1160, 0], "size": [320, 320]},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [1160, 380], "size": [340, 300],
         "values": {"concepts": "shirt", "method": "otsu", "grow": 8, "feather": 12.0}},
        {"key": "mask_preview", "type": "MaskPreview", "pos": [1160, 740], "size": [320, 320]},
        {"key": "set_mask", "type": "ConditioningSetMask", "pos": [1560, 0], "size": [320, 106],
         "values": {"strength": 1.0, "set_cond_area": "default"}},
        {"key": "combine", "type": "ConditioningCombine", "pos": [1560, 160], "size": [320, 46]},
        {"key": "encode", "type": "VAEEncode", "pos": [1560, 260], "size": [320, 46]},
        {"key": "noise_mask", "type": "SetLatentNoiseMask", "pos": [1560, 360], "size": [320, 46]},
        {"key": "sampler", "type": "KSampler", "pos": [1940, 0], "size": [320, 262],
         "values": {"seed": 0, "steps": 28, "cfg": 4.5, "sampler_name": "dpmpp_2m", "scheduler": "sgm_uniform",
                    "denoise": 0.8}},
        {"key": "decode", "type": "VAEDecode", "pos": [1940, 320], "size": [320, 46]},
        {"key": "save", "type": "SaveImage", "pos": [2320, 0], "size": [400, 460],
         "values": {"filename_prefix": "concept_regional_edit"}},
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
    "thumbnail": {"picture": "image", "saliency": "saliency", "concept": "shirt", "mask": "mask_preview"},
}

FLUX_ARGMAX_SEGMENTATION = {
    "name": "flux_multi_concept_segmentation_argmax",
    "file": "Flux.1 Argmax Segmentation",
    "title": "Flux.1: split a picture into concepts (argmax segmentation)",
    "nodes": [
        _note(FLUX_ARGMAX_NOTE, [-620, 0], (560, 800)),
        *_flux_loaders(0, 0),
        {"key": "image", "type": "LoadImage", "pos": [0, 430], "size": [320, 360], "values": {"image": "example.png"}},
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [340, 160],
         "values": {"concepts": "person, hair, shirt, background"}},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [380, 220], "size": SALIENCY_SIZE,
         "values": {"layers": "last 10", "noise_level": 0.5, "samples": 2}},
        {"key": "mask_a", "type": "ConceptAttentionSaliencyToMask", "pos": [780, 0], "size": [320, 300],
         "values": {"concepts": "person", "method": "argmax"}},
        {"key": "mask_b", "type": "ConceptAttentionSaliencyToMask", "pos": [780, 360], "size": [320, 300],
         "values": {"concepts": "hair, shirt", "method": "argmax"}},
        {"key": "mask_c", "type": "ConceptAttentionSaliencyToMask", "pos": [780, 720], "size": [320, 300],
         "values": {"concepts": "background", "method": "argmax"}},
        {"key": "preview_a", "type": "MaskPreview", "pos": [1160, 0], "size": [300, 300]},
        {"key": "preview_b", "type": "MaskPreview", "pos": [1160, 360], "size": [300, 300]},
        {"key": "preview_c", "type": "MaskPreview", "pos": [1160, 720], "size": [300, 300]},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1520, 0], "size": [340, 340]},
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
    "thumbnail": {"picture": "image", "saliency": "saliency", "concept": "person", "mask": "preview_a"},
}

KLEIN_REPO = "https://huggingface.co/Comfy-Org/flux2-klein/resolve/main/split_files"
FLUX2_VAE_URL = "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors"

FLUX2_KLEIN_MODELS_NOTE = f"""# Flux.2 Klein: mask a concept and edit it

1. Load your picture (Scale Image to Max Dimension keeps it near one megapixel); list what is in it in
   Concept List: the thing to change and the rest of the scene (`cat, sofa, cushion, wall`).
2. Pick the concept to change in Saliency to Mask (`cat`); `grow` and `feather` widen and soften the edge.
3. Say what it should become in the edit prompt and run. As in ComfyUI's own Klein templates,
   ReferenceLatent shows Klein the whole picture and the sampler is Flux2Scheduler + CFGGuider (4 steps,
   cfg 1, for the distilled model); Set Latent Noise Mask limits the repainting to the mask and Image
   Composite Masked pastes it back.

## Models (FLUX.2 [klein] 4B)

Put these files in these folders (Load Diffusion Model, Load CLIP and Load VAE offer to download them
when they are missing):

| file | folder |
|---|---|
| [flux-2-klein-4b.safetensors]({KLEIN_REPO}/diffusion_models/flux-2-klein-4b.safetensors) | `ComfyUI/models/diffusion_models/` |
| [qwen_3_4b.safetensors]({KLEIN_REPO}/text_encoders/qwen_3_4b.safetensors) (Load CLIP, type `flux2`) | `ComfyUI/models/text_encoders/` |
| [flux2-vae.safetensors]({FLUX2_VAE_URL}) | `ComfyUI/models/vae/` |

Klein 9B: flux-2-klein-9b-fp8.safetensors (black-forest-labs/FLUX.2-klein-9b-fp8) with
qwen_3_8b_fp8mixed.safetensors (Comfy-Org/flux2-klein-9B). The base (undistilled) Klein models want
about 20 steps and cfg 5 instead of 4 and 1. Concept Saliency reads FLUX.2 [dev] too
(mistral_3_small_flux2 text encoder).
"""

FLUX2_KLEIN_MASK_EDIT = {
    "name": "flux2_klein_concept_mask_edit",
    "file": "Flux.2 Klein Concept Mask Edit",
    "title": "Flux.2 Klein: mask a concept in an image and edit it",
    "nodes": [
        _note(FLUX2_KLEIN_MODELS_NOTE, [-620, 0], (560, 860)),
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
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [760, 0], "size": SALIENCY_SIZE,
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

QWEN_IMAGE_REPO = "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files"
QWEN_IMAGE_EDIT_REPO = "https://huggingface.co/Comfy-Org/Qwen-Image-Edit_ComfyUI/resolve/main/split_files"
QWEN_IMAGE_EDIT_FILE = "qwen_image_edit_2511_fp8mixed.safetensors"
QWEN_IMAGE_TE_FILE = "qwen_2.5_vl_7b_fp8_scaled.safetensors"
QWEN_IMAGE_VAE_FILE = "qwen_image_vae.safetensors"

# File names, folders and links as ComfyUI's own Qwen-Image-Edit 2511 / 2509 templates give them
# (comfyui-workflow-templates: image_qwen_image_edit_2511.json, image_qwen_image_edit_2509.json).
QWEN_IMAGE_EDIT_NOTE = f"""# Qwen-Image-Edit: change one thing in a picture, found by its name

Concept Saliency finds where each concept of the Concept List is in your picture; Saliency to Mask
turns the one you pick into a mask. Qwen-Image-Edit then repaints only that region, following the edit
prompt with the whole picture as its reference, and the result is pasted back inside the mask.

## Models

Put these files in these folders (Load Diffusion Model, Load CLIP and Load VAE offer to download them):

| file | folder |
|---|---|
| [{QWEN_IMAGE_EDIT_FILE}]({QWEN_IMAGE_EDIT_REPO}/diffusion_models/{QWEN_IMAGE_EDIT_FILE}) | `ComfyUI/models/diffusion_models/` |
| [{QWEN_IMAGE_TE_FILE}]({QWEN_IMAGE_REPO}/text_encoders/{QWEN_IMAGE_TE_FILE}) (Load CLIP, type `qwen_image`) | `ComfyUI/models/text_encoders/` |
| [{QWEN_IMAGE_VAE_FILE}]({QWEN_IMAGE_REPO}/vae/{QWEN_IMAGE_VAE_FILE}) | `ComfyUI/models/vae/` |

Qwen-Image-Edit 2509 works the same:
[qwen_image_edit_2509_fp8_e4m3fn.safetensors]({QWEN_IMAGE_EDIT_REPO}/diffusion_models/qwen_image_edit_2509_fp8_e4m3fn.safetensors),
also in `models/diffusion_models/`. Concept Saliency reads Qwen-Image (text to image) too.

## How to use

1. Load your picture (Scale for Qwen-Image-Edit picks the model's preferred size near one megapixel).
2. In Concept List, name the thing to change and the rest of the scene (`cat, sofa, cushion, wall`).
3. In Saliency to Mask, pick the concept to change (`cat`); `grow` and `feather` widen and soften the edge.
4. Say what it should become in the edit prompt, then run.

The sampler settings are those of ComfyUI's Qwen-Image-Edit templates without a Lightning LoRA
(ModelSamplingAuraFlow shift 3.1, CFGNorm, 20 steps, cfg 4; the templates' Lightning LoRA runs 4 steps
at cfg 1). Concept Saliency keeps growing after a run (legend and maps): leave the space below it free.

[ComfyUI's Qwen-Image-Edit tutorial](https://docs.comfy.org/tutorials/image/qwen/qwen-image-edit)
"""

QWEN_IMAGE_EDIT_MASK_EDIT = {
    "name": "qwen_image_edit_concept_mask",
    "file": "Qwen-Image Edit Concept Mask",
    "title": "Qwen-Image-Edit: mask a concept in an image and edit it",
    "nodes": [
        _markdown_note(QWEN_IMAGE_EDIT_NOTE, [-620, 0], (560, 600)),
        {"key": "unet", "type": "UNETLoader", "pos": [0, 0], "size": [320, 82],
         "values": {"unet_name": QWEN_IMAGE_EDIT_FILE, "weight_dtype": "default"},
         "properties": _models(QWEN_IMAGE_EDIT_FILE, f"{QWEN_IMAGE_EDIT_REPO}/diffusion_models/{QWEN_IMAGE_EDIT_FILE}",
                               "diffusion_models")},
        {"key": "clip", "type": "CLIPLoader", "pos": [0, 130], "size": [320, 106],
         "values": {"clip_name": QWEN_IMAGE_TE_FILE, "type": "qwen_image"},
         "properties": _models(QWEN_IMAGE_TE_FILE, f"{QWEN_IMAGE_REPO}/text_encoders/{QWEN_IMAGE_TE_FILE}",
                               "text_encoders")},
        {"key": "vae", "type": "VAELoader", "pos": [0, 290], "size": [320, 58],
         "values": {"vae_name": QWEN_IMAGE_VAE_FILE},
         "properties": _models(QWEN_IMAGE_VAE_FILE, f"{QWEN_IMAGE_REPO}/vae/{QWEN_IMAGE_VAE_FILE}", "vae")},
        # 1. find the concept. Nothing below Concept Saliency: it grows after a run (legend + maps).
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [340, 160],
         "values": {"concepts": "cat, sofa, cushion, wall"}},
        {"key": "image", "type": "LoadImage", "pos": [380, 220], "size": [340, 380], "values": {"image": "example.png"}},
        # As ComfyUI's Qwen-Image-Edit templates do: the nearest of the model's preferred sizes.
        {"key": "scale", "type": "FluxKontextImageScale", "pos": [380, 660], "size": [340, 26],
         "title": "Scale for Qwen-Image-Edit"},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [760, 0], "size": SALIENCY_SIZE,
         "values": {"layers": "last 10", "noise_level": 0.5}},
        {"key": "heatmaps", "type": "PreviewImage", "pos": [1160, 0], "size": [320, 320]},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [1160, 380], "size": [340, 300],
         "values": {"concepts": "cat", "method": "mean", "grow": 24, "feather": 8.0}},
        {"key": "mask_preview", "type": "MaskPreview", "pos": [1160, 740], "size": [320, 320]},
        # 2. edit inside the mask: Qwen-Image-Edit's conditioning (prompt + the picture as reference), sampled
        # as ComfyUI's Qwen-Image-Edit templates do, on the masked latent of the picture.
        {"key": "prompt", "type": "TextEncodeQwenImageEditPlus", "pos": [1560, 0], "size": [400, 250],
         "title": "Edit prompt",
         "values": {"prompt": "Replace the cat with a sleeping corgi puppy, keeping the sofa, the light and the "
                              "style of the photo consistent."}},
        {"key": "negative", "type": "TextEncodeQwenImageEditPlus", "pos": [1560, 310], "size": [400, 200],
         "title": "Negative prompt", "values": {"prompt": ""}},
        {"key": "encode", "type": "VAEEncode", "pos": [1560, 570], "size": [400, 46]},
        {"key": "noise_mask", "type": "SetLatentNoiseMask", "pos": [1560, 670], "size": [400, 46]},
        {"key": "model_sampling", "type": "ModelSamplingAuraFlow", "pos": [1560, 770], "size": [400, 58],
         "values": {"shift": 3.1}},
        {"key": "cfg_norm", "type": "CFGNorm", "pos": [1560, 880], "size": [400, 82], "values": {"strength": 1.0}},
        {"key": "sampler", "type": "KSampler", "pos": [2020, 0], "size": [320, 262],
         "values": {"seed": 0, "steps": 20, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple",
                    "denoise": 1.0}},
        {"key": "decode", "type": "VAEDecode", "pos": [2020, 330], "size": [320, 46]},
        {"key": "composite", "type": "ImageCompositeMasked", "pos": [2020, 430], "size": [320, 150],
         "values": {"x": 0, "y": 0, "resize_source": False}},
        {"key": "save", "type": "SaveImage", "pos": [2400, 0], "size": [400, 460],
         "values": {"filename_prefix": "concept_qwen_image_edit"}},
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
        ("vae", "VAE", "prompt", "vae"),
        ("scale", "IMAGE", "prompt", "image1"),
        ("clip", "CLIP", "negative", "clip"),
        ("vae", "VAE", "negative", "vae"),
        ("scale", "IMAGE", "negative", "image1"),
        ("scale", "IMAGE", "encode", "pixels"),
        ("vae", "VAE", "encode", "vae"),
        ("encode", "LATENT", "noise_mask", "samples"),
        ("mask", "mask", "noise_mask", "mask"),
        ("unet", "MODEL", "model_sampling", "model"),
        ("model_sampling", "MODEL", "cfg_norm", "model"),
        ("cfg_norm", "MODEL", "sampler", "model"),
        ("prompt", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("scale", "IMAGE", "composite", "destination"),
        ("decode", "IMAGE", "composite", "source"),
        ("mask", "mask", "composite", "mask"),
        ("composite", "IMAGE", "save", "images"),
    ],
    "groups": [
        {"title": "1. find the concept", "pos": [370, -80], "size": [1140, 1170], "color": "#3f789e"},
        {"title": "2. edit inside the mask (Qwen-Image-Edit)", "pos": [1550, -80], "size": [1260, 1070],
         "color": "#8A8"},
    ],
}

COGVIDEOX_TE_FILE = "t5xxl_fp16.safetensors"
COGVIDEOX_VAE_FILE = "cogvideox_vae.safetensors"
# As ComfyUI's own CogVideoX blueprint (Video Inpaint (VOID)) links them: the T5-XXL text encoder and the CogVideoX VAE.
COGVIDEOX_VAE_URL = "https://huggingface.co/Comfy-Org/void-model/resolve/main/vae/cogvideox_vae.safetensors"
# No download link: ComfyUI's Load Diffusion Model reads CogVideoX in its own single-file layout (the Note says so).
COGVIDEOX_MODEL_FILE = "cogvideox_5b_bf16.safetensors"

COGVIDEOX_MODELS_NOTE = f"""## Models (CogVideoX-5B, text to video)

| file | folder |
|---|---|
| {COGVIDEOX_MODEL_FILE} (see below) | `ComfyUI/models/diffusion_models/` |
| [{COGVIDEOX_TE_FILE}]({FLUX_TEXT_ENCODERS}/{COGVIDEOX_TE_FILE}) (Load CLIP, type `cogvideox`) | `ComfyUI/models/text_encoders/` |
| [{COGVIDEOX_VAE_FILE}]({COGVIDEOX_VAE_URL}) | `ComfyUI/models/vae/` |

The diffusion model has no download link here: use a CogVideoX-5B text-to-video file in the single-file
layout ComfyUI's own CogVideoX loader reads, and pick it in Load Diffusion Model. The text encoder and the
VAE are the files ComfyUI's CogVideoX blueprint (Video Inpaint (VOID)) uses. With less memory:
[t5xxl_fp8_e4m3fn_scaled.safetensors]({FLUX_TEXT_ENCODERS}/t5xxl_fp8_e4m3fn_scaled.safetensors).
"""

COGVIDEOX_GENERATE_NOTE = """# CogVideoX: generate a clip and its concept mask video

1. Write the prompt, and in Concept List the things in the clip to follow (`fox, snow, trees, sky`).
2. Run. Concept Attention (Generation) lets the KSampler record where each concept is in every frame;
   the clip is the same as without it. Create Video + Save Video save the clip (49 frames at 8 fps, the
   length Empty HunyuanVideo 1.0 Latent gives CogVideoX: 16 channels, 4 frames and 8x8 pixels a cell).
3. Concept Saliency from Sampling shows the regions and each concept's map, animated over the clip.
   Saliency to Mask gives one mask per decoded frame (pick the concept, `fox`); Convert Mask to Image,
   Create Video and Save Video save them as a mask video next to the clip, frame for frame: ready for
   compositing or a video inpainting model.

Sampling as ComfyUI's CogVideoX blueprint does: cfg 6, scheduler `simple`; 30 steps. Keep the length
4k + 1 (49 frames: 13 latent frames). Concept Saliency from Sampling grows after a run (legend and maps):
leave the space below it free.

""" + COGVIDEOX_MODELS_NOTE

COGVIDEOX_CLIP_NOTE = """# CogVideoX: mask a concept in an existing clip

1. Load your clip in Load Video (Get Video Components gives its frames and frame rate). Get Image from
   Batch keeps its first 49 frames (CogVideoX clips are 4k + 1 frames long) and Upscale
   Image brings them to 720x480, CogVideoX-5B's size.
2. In Concept List, name what is in the clip (`dog, person, grass, sky`); in Saliency to Mask, pick the
   concept to mask (`dog`).
3. Run. Concept Saliency encodes the frames with the VAE, noises them to `noise_level` and reads where
   each concept is, frame by frame (its preview is animated). Saliency to Mask gives one mask per frame,
   its edges following the frames; Convert Mask to Image, Create Video (at the clip's frame rate) and Save
   Video save the mask video.

Concept Saliency grows after a run (legend and maps): leave the space below it free.

""" + COGVIDEOX_MODELS_NOTE


def _cogvideox_loaders() -> list[dict]:
    return [
        {"key": "unet", "type": "UNETLoader", "pos": [0, 0], "size": [320, 82],
         "values": {"unet_name": COGVIDEOX_MODEL_FILE, "weight_dtype": "default"}},
        {"key": "clip", "type": "CLIPLoader", "pos": [0, 130], "size": [320, 106],
         "values": {"clip_name": COGVIDEOX_TE_FILE, "type": "cogvideox"},
         "properties": _models(COGVIDEOX_TE_FILE, f"{FLUX_TEXT_ENCODERS}/{COGVIDEOX_TE_FILE}", "text_encoders")},
        {"key": "vae", "type": "VAELoader", "pos": [0, 290], "size": [320, 58],
         "values": {"vae_name": COGVIDEOX_VAE_FILE},
         "properties": _models(COGVIDEOX_VAE_FILE, COGVIDEOX_VAE_URL, "vae")},
    ]


COGVIDEOX_GENERATE_MASK_VIDEO = {
    "name": "cogvideox_concept_mask_video",
    "file": "CogVideoX Concept Mask Video",
    "title": "CogVideoX: generate a clip and save a concept mask video next to it",
    "nodes": [
        _markdown_note(COGVIDEOX_GENERATE_NOTE, [-620, 0], (560, 860)),
        *_cogvideox_loaders(),
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [320, 160],
         "values": {"concepts": "fox, snow, trees, sky"}},
        {"key": "patch", "type": "ConceptAttentionPatchModel", "pos": [380, 220], "size": [320, 260],
         "values": {"layers": "last 10", "start_percent": 0.0, "end_percent": 1.0}},
        {"key": "prompt", "type": "CLIPTextEncode", "pos": [760, 0], "size": [340, 150],
         "values": {"text": "a red fox trotting through fresh snow between tall pine trees, soft morning light, "
                            "clear blue sky, the camera follows the fox"}},
        {"key": "negative", "type": "CLIPTextEncode", "pos": [760, 200], "size": [340, 110],
         "values": {"text": "blurry, low quality, distorted, flickering"}},
        {"key": "latent", "type": "EmptyHunyuanLatentVideo", "pos": [760, 360], "size": [340, 130],
         "values": {"width": 720, "height": 480, "length": 49, "batch_size": 1}},
        {"key": "sampler", "type": "KSampler", "pos": [1160, 0], "size": [320, 262],
         "values": {"seed": 42, "steps": 30, "cfg": 6.0, "sampler_name": "euler", "scheduler": "simple",
                    "denoise": 1.0}},
        {"key": "decode", "type": "VAEDecode", "pos": [1160, 320], "size": [320, 46]},
        {"key": "maps", "type": "ConceptAttentionSamplingSaliency", "pos": [1160, 420], "size": SAMPLING_SALIENCY_SIZE},
        {"key": "save_maps", "type": "ConceptAttentionSaveSaliency", "pos": [1160, 1060], "size": [320, 82],
         "values": {"filename_prefix": "concept_saliency/fox_clip"}},
        {"key": "clip_video", "type": "CreateVideo", "pos": [1540, 0], "size": [340, 82], "values": {"fps": 8.0}},
        {"key": "save_clip", "type": "SaveVideo", "pos": [1540, 200], "size": [400, 420],
         "values": {"filename_prefix": "cogvideox/fox"}},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [2000, 0], "size": [340, 300],
         "values": {"concepts": "fox", "method": "mean"}},
        {"key": "mask_image", "type": "MaskToImage", "pos": [2000, 360], "size": [340, 26]},
        {"key": "mask_video", "type": "CreateVideo", "pos": [2000, 440], "size": [340, 82], "values": {"fps": 8.0}},
        {"key": "save_mask", "type": "SaveVideo", "pos": [2000, 640], "size": [400, 420],
         "values": {"filename_prefix": "cogvideox/fox_mask"}},
    ],
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("clip", "CLIP", "prompt", "clip"),
        ("clip", "CLIP", "negative", "clip"),
        ("unet", "MODEL", "patch", "model"),
        ("concepts", "concepts", "patch", "concepts"),
        ("patch", "model", "sampler", "model"),
        ("prompt", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("latent", "LATENT", "sampler", "latent_image"),
        ("sampler", "LATENT", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("decode", "IMAGE", "clip_video", "images"),
        ("clip_video", "VIDEO", "save_clip", "video"),
        ("patch", "model", "maps", "model"),
        ("sampler", "LATENT", "maps", "latent"),
        ("decode", "IMAGE", "maps", "image"),
        ("maps", "saliency", "save_maps", "saliency"),
        ("maps", "saliency", "mask", "saliency"),
        ("decode", "IMAGE", "mask", "image"),
        ("mask", "mask", "mask_image", "mask"),
        ("mask_image", "IMAGE", "mask_video", "images"),
        ("mask_video", "VIDEO", "save_mask", "video"),
    ],
    "groups": [],
    "thumbnail": {"saliency": "maps", "concept": "fox"},
}

COGVIDEOX_CLIP_MASK = {
    "name": "cogvideox_clip_concept_mask",
    "file": "CogVideoX Clip Concept Mask",
    "title": "CogVideoX: mask a concept in an existing clip (a mask video)",
    "nodes": [
        _markdown_note(COGVIDEOX_CLIP_NOTE, [-620, 0], (560, 820)),
        *_cogvideox_loaders(),
        {"key": "load", "type": "LoadVideo", "pos": [0, 400], "size": [320, 420], "values": {"file": "example.mp4"}},
        {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [380, 0], "size": [340, 160],
         "values": {"concepts": "dog, person, grass, sky"}},
        {"key": "components", "type": "GetVideoComponents", "pos": [380, 220], "size": [340, 130]},
        {"key": "frames", "type": "ImageFromBatch", "pos": [380, 410], "size": [340, 82],
         "values": {"batch_index": 0, "length": 49}},
        {"key": "scale", "type": "ImageScale", "pos": [380, 550], "size": [340, 130],
         "values": {"upscale_method": "lanczos", "width": 720, "height": 480, "crop": "center"}},
        {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [760, 0], "size": SALIENCY_SIZE,
         "values": {"layers": "last 10", "noise_level": 0.5}},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [1160, 0], "size": [340, 300],
         "values": {"concepts": "dog", "method": "mean", "grow": 4, "feather": 2.0}},
        {"key": "mask_image", "type": "MaskToImage", "pos": [1160, 360], "size": [340, 26]},
        {"key": "mask_video", "type": "CreateVideo", "pos": [1160, 440], "size": [340, 82]},
        {"key": "save_mask", "type": "SaveVideo", "pos": [1160, 640], "size": [400, 420],
         "values": {"filename_prefix": "cogvideox/clip_mask"}},
    ],
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("load", "VIDEO", "components", "video"),
        ("components", "images", "frames", "image"),
        ("frames", "IMAGE", "scale", "image"),
        ("unet", "MODEL", "saliency", "model"),
        ("concepts", "concepts", "saliency", "concepts"),
        ("scale", "IMAGE", "saliency", "image"),
        ("vae", "VAE", "saliency", "vae"),
        ("saliency", "saliency", "mask", "saliency"),
        ("scale", "IMAGE", "mask", "image"),
        ("mask", "mask", "mask_image", "mask"),
        ("mask_image", "IMAGE", "mask_video", "images"),
        ("components", "fps", "mask_video", "fps"),
        ("mask_video", "VIDEO", "save_mask", "video"),
    ],
    "groups": [],
    "thumbnail": {"saliency": "saliency", "concept": "dog"},
}

EXAMPLES = [FLUX_MASK_INPAINT, FLUX_GENERATE_INSPECT, SD35_REGIONAL_EDIT, FLUX_ARGMAX_SEGMENTATION,
            FLUX2_KLEIN_MASK_EDIT, QWEN_IMAGE_EDIT_MASK_EDIT, COGVIDEOX_GENERATE_MASK_VIDEO, COGVIDEOX_CLIP_MASK]

# What the browser tier checks in each saved workflow's prompt (graphToPrompt): pack node types
# that must be there, and widget values that define the example.
EXPECTED = {
    "flux_concept_mask_inpaint": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask",
                  "UNETLoader", "DualCLIPLoader", "VAELoader", "SetLatentNoiseMask", "KSampler"},
        "files": {"flux1-dev.safetensors", "ae.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors"},
        # The loaders name their files with a download URL and the models/ folder they go to.
        "models": {"UNETLoader": ("flux1-dev.safetensors", "diffusion_models"),
                   "DualCLIPLoader": [("t5xxl_fp16.safetensors", "text_encoders"), ("clip_l.safetensors", "text_encoders")],
                   "VAELoader": ("ae.safetensors", "vae")},
    },
    "flux_generate_and_inspect_concept_maps": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionPatchModel", "ConceptAttentionSamplingSaliency",
                  "KSampler", "UNETLoader", "DualCLIPLoader"},
        "files": {"flux1-dev.safetensors", "ae.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors"},
        # The loaders name their files with a download URL and the models/ folder they go to.
        "models": {"UNETLoader": ("flux1-dev.safetensors", "diffusion_models"),
                   "DualCLIPLoader": [("t5xxl_fp16.safetensors", "text_encoders"), ("clip_l.safetensors", "text_encoders")],
                   "VAELoader": ("ae.safetensors", "vae")},
    },
    "sd35_concept_mask_regional_edit": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask",
                  "ConditioningSetMask", "TripleCLIPLoader", "CheckpointLoaderSimple"},
        "files": {"sd3.5_large.safetensors", "clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors"},
        # The public text encoders carry their links; the checkpoint and clip_g are gated (the Note says so).
        "models": {"TripleCLIPLoader": [("clip_l.safetensors", "text_encoders"),
                                        ("t5xxl_fp16.safetensors", "text_encoders")]},
        "gated": ["sd3.5_large.safetensors", "clip_g.safetensors"],
    },
    "flux_multi_concept_segmentation_argmax": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask"},
        "files": {"flux1-dev.safetensors", "ae.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors"},
        "mask_method": "argmax",
        # The loaders name their files with a download URL and the models/ folder they go to.
        "models": {"UNETLoader": ("flux1-dev.safetensors", "diffusion_models"),
                   "DualCLIPLoader": [("t5xxl_fp16.safetensors", "text_encoders"), ("clip_l.safetensors", "text_encoders")],
                   "VAELoader": ("ae.safetensors", "vae")},
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
    "qwen_image_edit_concept_mask": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask",
                  "UNETLoader", "CLIPLoader", "VAELoader", "LoadImage", "TextEncodeQwenImageEditPlus",
                  "SetLatentNoiseMask", "KSampler", "ImageCompositeMasked", "SaveImage"},
        "files": {QWEN_IMAGE_EDIT_FILE, QWEN_IMAGE_TE_FILE, QWEN_IMAGE_VAE_FILE},
        "widgets": {"CLIPLoader": {"type": "qwen_image"}},
        "models": {"UNETLoader": (QWEN_IMAGE_EDIT_FILE, "diffusion_models"),
                   "CLIPLoader": (QWEN_IMAGE_TE_FILE, "text_encoders"),
                   "VAELoader": (QWEN_IMAGE_VAE_FILE, "vae")},
        "saliency_room": 600,
    },
    # The diffusion model file has no public link (the Note says why): only the linked files are listed.
    "cogvideox_concept_mask_video": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionPatchModel", "ConceptAttentionSamplingSaliency",
                  "ConceptAttentionSaliencyToMask", "UNETLoader", "CLIPLoader", "VAELoader", "EmptyHunyuanLatentVideo",
                  "KSampler", "VAEDecode", "MaskToImage", "CreateVideo", "SaveVideo"},
        "files": {COGVIDEOX_TE_FILE, COGVIDEOX_VAE_FILE},
        "widgets": {"CLIPLoader": {"type": "cogvideox"}, "EmptyHunyuanLatentVideo": {"length": 49}},
        "models": {"CLIPLoader": (COGVIDEOX_TE_FILE, "text_encoders"), "VAELoader": (COGVIDEOX_VAE_FILE, "vae")},
    },
    "cogvideox_clip_concept_mask": {
        "types": {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask",
                  "UNETLoader", "CLIPLoader", "VAELoader", "LoadVideo", "GetVideoComponents", "MaskToImage",
                  "CreateVideo", "SaveVideo"},
        "files": {COGVIDEOX_TE_FILE, COGVIDEOX_VAE_FILE},
        "widgets": {"CLIPLoader": {"type": "cogvideox"}},
        "models": {"CLIPLoader": (COGVIDEOX_TE_FILE, "text_encoders"), "VAELoader": (COGVIDEOX_VAE_FILE, "vae")},
        "saliency_room": 600,
    },
}


def file_stem(spec: dict) -> str:
    """The example's file name without .json: the template browser's title for it."""
    return spec.get("file", spec["name"])
