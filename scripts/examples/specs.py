"""The example workflows of example_workflows/, as graphs built through the real UI.

scripts/make_examples.py creates each graph in the browser with the front end's own node classes (so
widget order, link format and version fields are exactly what ComfyUI saves), then writes
example_workflows/<name>.json and the template thumbnail <name>.jpg next to it. The browser tier
loads the saved files back through the UI (tests/browser/test_frontend.py).

A spec: name (the key of EXPECTED), file (the saved file's name without .json: ComfyUI's template
browser shows it as the template's title, so it reads as a title and fits a card), title,
nodes = [{key, type, pos, values (widget name -> value), size?, title?, properties?}] (laid out in columns
by parts.columns, compact enough that ComfyUI opens the template readable), links = [(from_key, output name,
to_key, input name)], groups = [{title, pos, size, color?}], thumbnail? ({picture, saliency, concept, mask?}:
node keys whose results make the thumbnail, after a run on tiny models; found from the node types otherwise),
tiny? ({stand-in node type: {widget: value}}: the tiny models' seeds for its thumbnail run, see
tests/browser/example_runs.py), flat_tiny_maps? (why the tiny models' maps of this example are flat: its card's
regions may show one colour, see thumbnails.tile_kinds). `properties` go into the
node's saved properties: loaders carry `models` ([{name, url, directory}]) there as ComfyUI's
stock templates do, so the front end can offer the missing files for download. The pieces the graphs
share are built by parts.py.
"""

from __future__ import annotations

from .minimax_spec import MINIMAX_EXPECTED, MINIMAX_I2V_MASK_VIDEO
from .notes import (
    COGVIDEOX_CLIP_NOTE,
    COGVIDEOX_GENERATE_NOTE,
    COGVIDEOX_MODEL_FILE,
    COGVIDEOX_TE_FILE,
    COGVIDEOX_VAE_FILE,
    COGVIDEOX_VAE_URL,
    FLUX1_DEV_URL,
    FLUX2_KLEIN_MODELS_NOTE,
    FLUX2_VAE_URL,
    FLUX_AE_URL,
    FLUX_ARGMAX_NOTE,
    FLUX_GENERATE_INSPECT_NOTE,
    FLUX_MASK_INPAINT_NOTE,
    FLUX_TEXT_ENCODERS,
    KLEIN_REPO,
    QWEN_IMAGE_EDIT_FILE,
    QWEN_IMAGE_EDIT_NOTE,
    QWEN_IMAGE_EDIT_REPO,
    QWEN_IMAGE_REPO,
    QWEN_IMAGE_TE_FILE,
    QWEN_IMAGE_VAE_FILE,
    SD35_FP8_FILE,
    SD35_FP8_URL,
    SD35_REGIONAL_EDIT_NOTE,
)
from .parts import (
    columns,
    composite_links,
    composite_node,
    concept_list,
    decode_links,
    find_concept_nodes,
    flux_loaders,
    loaders,
    mask_links,
    mask_video_links,
    mask_video_nodes,
    masked_latent_links,
    models,
    node,
    note,
    saliency_links,
    saliency_node,
    sampler,
    sampling_maps_links,
    sampling_maps_nodes,
    save_image,
)
from .sam3_spec import SAM3_EXPECTED, SAM3_REFINE_INPAINT


def _load_image(height: int = 320) -> dict:
    return node("image", "LoadImage", size=[320, height], image="example.png")


def _flux_loaders() -> list[dict]:
    return flux_loaders(FLUX1_DEV_URL, FLUX_TEXT_ENCODERS, FLUX_AE_URL)


def _find_concept(concepts: str, concept: str, method: str, grow: int, feather: float) -> tuple[list, list]:
    """The Concept List above Concept Saliency (one column: nothing below Concept Saliency, which grows after a
    run), and Saliency to Mask above Preview Mask (the top of the next column)."""
    saliency, mask = find_concept_nodes(concept, method, grow, feather)
    return [concept_list(concepts), saliency], mask


# Each example is its Note and columns of nodes, left to right (parts.columns lays them out compactly enough
# that the template opens readable): the loaders and the picture, the Concept List above Concept Saliency, the
# mask, then the edit.

_FLUX_INPAINT_FIND, _FLUX_INPAINT_MASK = _find_concept("dog, grass, sky, tree", "dog", "mean", 16, 8.0)

FLUX_MASK_INPAINT = {
    "name": "flux_concept_mask_inpaint",
    "file": "Flux.1 Concept Mask Inpaint",
    "title": "Flux.1: mask a concept in an image and inpaint it",
    "nodes": columns(
        [*_flux_loaders(), _load_image(), node("encode", "VAEEncode", size=[320, 46]),
         node("noise_mask", "SetLatentNoiseMask", size=[320, 46])],
        _FLUX_INPAINT_FIND,
        [*_FLUX_INPAINT_MASK,
         node("prompt", "CLIPTextEncode", size=[340, 130], text="a red fox sitting on the grass, photo"),
         node("guidance", "FluxGuidance", size=[340, 58], guidance=3.5),
         node("negative", "ConditioningZeroOut", size=[340, 26])],
        [sampler(seed=0, steps=20, cfg=1.0), node("decode", "VAEDecode", size=[320, 46]), composite_node(),
         save_image("concept_inpaint")],
        note_node=note(FLUX_MASK_INPAINT_NOTE)),
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("clip", "CLIP", "prompt", "clip"),
        *saliency_links(),
        *mask_links(),
        ("prompt", "CONDITIONING", "guidance", "conditioning"),
        ("prompt", "CONDITIONING", "negative", "conditioning"),
        *masked_latent_links(),
        ("unet", "MODEL", "sampler", "model"),
        ("guidance", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        *decode_links(),
        *composite_links(),
    ],
    "groups": [],
    # the thumbnail: the picture, its regions, the map of the masked concept, the mask
    "thumbnail": {"picture": "image", "saliency": "saliency", "concept": "dog", "mask": "mask_preview"},
}

FLUX_GENERATE_INSPECT = {
    "name": "flux_generate_and_inspect_concept_maps",
    "file": "Flux.1 Generation Concept Maps",
    "title": "Flux.1: generate a picture and see where each concept went",
    "nodes": columns(
        [*_flux_loaders(), concept_list("dragon, sun, mountains, sky, clouds"),
         node("patch", "ConceptAttentionPatchModel", size=[340, 260],
              layers="last 10", start_percent=0.0, end_percent=1.0)],
        [node("prompt", "CLIPTextEncode", size=[340, 150],
              text="a red dragon flying over snowy mountains at sunset, the sun low on the horizon, dramatic clouds"),
         node("guidance", "FluxGuidance", size=[340, 58], guidance=3.5),
         node("negative", "ConditioningZeroOut", size=[340, 26]),
         node("latent", "EmptySD3LatentImage", size=[340, 106], width=1024, height=1024, batch_size=1)],
        [sampler(seed=42, steps=20, cfg=1.0), node("decode", "VAEDecode", size=[320, 46]),
         save_image("concept_generation", 400)],
        sampling_maps_nodes("concept_saliency/dragon"),
        note_node=note(FLUX_GENERATE_INSPECT_NOTE)),
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
        *decode_links(),
        ("decode", "IMAGE", "save", "images"),
        *sampling_maps_links(),
        ("maps", "saliency", "save_maps", "saliency"),
    ],
    "groups": [],
    "thumbnail": {"picture": "save", "saliency": "maps", "concept": "dragon"},
}

SD35_CHECKPOINT = ("ckpt", "MODEL")
SD35_CLIP = ("ckpt", "CLIP")
SD35_VAE = ("ckpt", "VAE")
_SD35_FIND, _SD35_MASK = _find_concept("person, shirt, hair, background", "shirt", "otsu", 8, 12.0)

SD35_REGIONAL_EDIT = {
    "name": "sd35_concept_mask_regional_edit",
    "file": "SD3.5 Regional Edit by Concept",
    "title": "SD3.5: concept mask as the region of a regional prompt",
    "nodes": columns(
        # As ComfyUI's own SD3.5 templates: Comfy-Org's public fp8 checkpoint, text encoders and VAE inside.
        [node("ckpt", "CheckpointLoaderSimple", size=[320, 98],
              properties=models((SD35_FP8_FILE, SD35_FP8_URL, "checkpoints")), ckpt_name=SD35_FP8_FILE),
         node("base_prompt", "CLIPTextEncode", size=[320, 130], text="a photo of a person, natural light"),
         node("region_prompt", "CLIPTextEncode", size=[320, 130], title="Region prompt", text="a red leather jacket"),
         node("negative", "CLIPTextEncode", size=[320, 110], text="blurry, low quality"),
         _load_image()],
        _SD35_FIND,
        [*_SD35_MASK,
         node("set_mask", "ConditioningSetMask", size=[340, 106], strength=1.0, set_cond_area="default"),
         node("combine", "ConditioningCombine", size=[340, 46])],
        [node("encode", "VAEEncode", size=[320, 46]), node("noise_mask", "SetLatentNoiseMask", size=[320, 46]),
         sampler(seed=0, steps=28, cfg=4.5, sampler_name="dpmpp_2m", scheduler="sgm_uniform", denoise=0.8),
         node("decode", "VAEDecode", size=[320, 46]), save_image("concept_regional_edit")],
        note_node=note(SD35_REGIONAL_EDIT_NOTE)),
    "links": [
        *((*SD35_CLIP, prompt, "clip") for prompt in ("concepts", "base_prompt", "region_prompt", "negative")),
        *saliency_links(model=SD35_CHECKPOINT, vae=SD35_VAE, conditioning="base_prompt"),
        *mask_links(),
        ("region_prompt", "CONDITIONING", "set_mask", "conditioning"),
        ("mask", "mask", "set_mask", "mask"),
        ("base_prompt", "CONDITIONING", "combine", "conditioning_1"),
        ("set_mask", "CONDITIONING", "combine", "conditioning_2"),
        *masked_latent_links(vae=SD35_VAE),
        (*SD35_CHECKPOINT, "sampler", "model"),
        ("combine", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        *decode_links(vae=SD35_VAE),
        ("decode", "IMAGE", "save", "images"),
    ],
    "groups": [],
    "thumbnail": {"picture": "image", "saliency": "saliency", "concept": "shirt", "mask": "mask_preview"},
}

# One Saliency to Mask (argmax) and its Preview Mask per segment: (key suffix, concepts).
ARGMAX_SEGMENTS = (("a", "person"), ("b", "hair, shirt"), ("c", "background"))

FLUX_ARGMAX_SEGMENTATION = {
    "name": "flux_multi_concept_segmentation_argmax",
    "file": "Flux.1 Argmax Segmentation",
    "title": "Flux.1: split a picture into concepts (argmax segmentation)",
    "nodes": columns(
        [*_flux_loaders(), _load_image(360)],
        [concept_list("person, hair, shirt, background"), saliency_node(samples=2)],
        [node(f"mask_{s}", "ConceptAttentionSaliencyToMask", size=[340, 300], concepts=c, method="argmax")
         for s, c in ARGMAX_SEGMENTS],
        [node(f"preview_{s}", "MaskPreview", size=[300, 300]) for s, _ in ARGMAX_SEGMENTS],
        note_node=note(FLUX_ARGMAX_NOTE)),
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        *saliency_links(),
        *(("saliency", "saliency", f"mask_{s}", "saliency") for s, _ in ARGMAX_SEGMENTS),
        *(("image", "IMAGE", f"mask_{s}", "image") for s, _ in ARGMAX_SEGMENTS),
        *((f"mask_{s}", "mask", f"preview_{s}", "mask") for s, _ in ARGMAX_SEGMENTS),
    ],
    "groups": [],
    "thumbnail": {"picture": "image", "saliency": "saliency", "concept": "person", "mask": "preview_a"},
    # With the tiny Flux's usual seed one concept wins every token: the card would show one colour, empty masks.
    "tiny": {"ConceptAttentionTestTinyFlux": {"seed": 3}},
}


def _edit_links(prompt_inputs: list[tuple]) -> list[tuple]:
    """Klein's and Qwen-Image-Edit's first steps: the picture scaled, the concept found and masked, the
    edit prompt's inputs."""
    return [("image", "IMAGE", "scale", "image"), ("clip", "CLIP", "concepts", "clip"),
            *saliency_links(picture="scale"), *mask_links(picture="scale"), *prompt_inputs]


_KLEIN_FIND, _KLEIN_MASK = _find_concept("cat, sofa, cushion, wall", "cat", "mean", 24, 8.0)

FLUX2_KLEIN_MASK_EDIT = {
    "name": "flux2_klein_concept_mask_edit",
    "file": "Flux.2 Klein Concept Mask Edit",
    "title": "Flux.2 Klein: mask a concept in an image and edit it",
    "nodes": columns(
        [*loaders("flux-2-klein-4b.safetensors", "qwen_3_4b.safetensors", "flux2", "flux2-vae.safetensors", {
            "flux-2-klein-4b.safetensors": f"{KLEIN_REPO}/diffusion_models/flux-2-klein-4b.safetensors",
            "qwen_3_4b.safetensors": f"{KLEIN_REPO}/text_encoders/qwen_3_4b.safetensors",
            "flux2-vae.safetensors": FLUX2_VAE_URL}),
         _load_image(),
         # Klein's templates scale with ImageScaleToTotalPixels, which needs kornia (one of ComfyUI's
         # optional requirements); this stock node needs nothing and also keeps the picture near 1 MP.
         node("scale", "ImageScaleToMaxDimension", size=[320, 82], upscale_method="lanczos", largest_size=1024),
         node("encode", "VAEEncode", size=[320, 46]),
         node("noise_mask", "SetLatentNoiseMask", size=[320, 46]),
         # last in its column: it shows the picture's size after a run, and grows
         node("size", "GetImageSize", size=[320, 66])],
        _KLEIN_FIND,
        # 2. edit inside the mask: Klein's reference-latent edit, sampled as ComfyUI's Klein templates do.
        [*_KLEIN_MASK,
         node("prompt", "CLIPTextEncode", size=[340, 130], title="Edit prompt",
              text="Replace the cat with a sleeping corgi puppy. Keep the sofa, the light and the style of the photo."),
         node("negative", "ConditioningZeroOut", size=[340, 26]),
         node("reference", "ReferenceLatent", size=[340, 46]),
         node("negative_reference", "ReferenceLatent", size=[340, 46]),
         node("noise", "RandomNoise", size=[340, 82], noise_seed=0)],
        [node("sampler_select", "KSamplerSelect", size=[320, 58], sampler_name="euler"),
         node("scheduler", "Flux2Scheduler", size=[320, 106], steps=4),
         node("guider", "CFGGuider", size=[320, 98], cfg=1.0),
         node("sampler", "SamplerCustomAdvanced", size=[320, 106]),
         node("decode", "VAEDecode", size=[320, 46]),
         composite_node(),
         save_image("concept_klein_edit", 280)],
        note_node=note(FLUX2_KLEIN_MODELS_NOTE)),
    "links": [
        *_edit_links([("clip", "CLIP", "prompt", "clip"), ("prompt", "CONDITIONING", "negative", "conditioning")]),
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
        *decode_links(sampled=("sampler", "output")),
        *composite_links(picture="scale"),
    ],
    "groups": [],
    # With the tiny Klein's usual seed "cat" wins no token: the card's mask would be empty.
    "tiny": {"ConceptAttentionTestTinyKlein": {"seed": 1}},
}

_QWEN_FIND, _QWEN_MASK = _find_concept("cat, sofa, cushion, wall", "cat", "mean", 24, 8.0)

QWEN_IMAGE_EDIT_MASK_EDIT = {
    "name": "qwen_image_edit_concept_mask",
    "file": "Qwen-Image Edit Concept Mask",
    "title": "Qwen-Image-Edit: mask a concept in an image and edit it",
    "nodes": columns(
        [*loaders(QWEN_IMAGE_EDIT_FILE, QWEN_IMAGE_TE_FILE, "qwen_image", QWEN_IMAGE_VAE_FILE, {
            QWEN_IMAGE_EDIT_FILE: f"{QWEN_IMAGE_EDIT_REPO}/diffusion_models/{QWEN_IMAGE_EDIT_FILE}",
            QWEN_IMAGE_TE_FILE: f"{QWEN_IMAGE_REPO}/text_encoders/{QWEN_IMAGE_TE_FILE}",
            QWEN_IMAGE_VAE_FILE: f"{QWEN_IMAGE_REPO}/vae/{QWEN_IMAGE_VAE_FILE}"}),
         _load_image(),
         # As ComfyUI's Qwen-Image-Edit templates do: the nearest of the model's preferred sizes.
         node("scale", "FluxKontextImageScale", size=[320, 26], title="Scale for Qwen-Image-Edit"),
         node("encode", "VAEEncode", size=[320, 46]),
         node("noise_mask", "SetLatentNoiseMask", size=[320, 46])],
        _QWEN_FIND,
        # 2. edit inside the mask: Qwen-Image-Edit's conditioning (prompt + the picture as reference), sampled
        # as ComfyUI's Qwen-Image-Edit templates do, on the masked latent of the picture.
        [*_QWEN_MASK,
         node("prompt", "TextEncodeQwenImageEditPlus", size=[340, 200], title="Edit prompt",
              prompt="Replace the cat with a sleeping corgi puppy, keeping the sofa, the light and the "
                     "style of the photo consistent."),
         node("negative", "TextEncodeQwenImageEditPlus", size=[340, 170], title="Negative prompt", prompt="")],
        [node("model_sampling", "ModelSamplingAuraFlow", size=[320, 58], shift=3.1),
         node("cfg_norm", "CFGNorm", size=[320, 82], strength=1.0),
         sampler(seed=0, steps=20, cfg=4.0),
         node("decode", "VAEDecode", size=[320, 46]),
         composite_node(),
         save_image("concept_qwen_image_edit", 260)],
        note_node=note(QWEN_IMAGE_EDIT_NOTE)),
    "links": [
        *_edit_links([link for prompt in ("prompt", "negative") for link in (
            ("clip", "CLIP", prompt, "clip"), ("vae", "VAE", prompt, "vae"), ("scale", "IMAGE", prompt, "image1"))]),
        *masked_latent_links(picture="scale"),
        ("unet", "MODEL", "model_sampling", "model"),
        ("model_sampling", "MODEL", "cfg_norm", "model"),
        ("cfg_norm", "MODEL", "sampler", "model"),
        ("prompt", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("noise_mask", "LATENT", "sampler", "latent_image"),
        *decode_links(),
        *composite_links(picture="scale"),
    ],
    "groups": [],
    # Known: the tiny Qwen-Image stand-in's output-space maps are flat (the concepts' scores differ by about 1e-3
    # on every token, whatever the seeds, its weights' scale or its modulation): one concept wins every token and
    # the card's regions show one colour (thumbnails.tile_kinds). These seeds make it the masked concept, "cat",
    # so the card's mask is not empty.
    "flat_tiny_maps": "the tiny Qwen-Image's output-space maps are flat: one concept wins every token",
    "tiny": {"ConceptAttentionTestTinyQwenImage": {"seed": 6}, "ConceptAttentionTestTinyQwenImageClip": {"seed": 6}},
}


def _cogvideox_loaders() -> list[dict]:
    # No link for the diffusion model: ComfyUI reads CogVideoX in its own single-file layout (the Note says so).
    return loaders(COGVIDEOX_MODEL_FILE, COGVIDEOX_TE_FILE, "cogvideox", COGVIDEOX_VAE_FILE, {
        COGVIDEOX_TE_FILE: f"{FLUX_TEXT_ENCODERS}/{COGVIDEOX_TE_FILE}", COGVIDEOX_VAE_FILE: COGVIDEOX_VAE_URL})


COGVIDEOX_GENERATE_MASK_VIDEO = {
    "name": "cogvideox_concept_mask_video",
    "file": "CogVideoX Concept Mask Video",
    "title": "CogVideoX: generate a clip and save a concept mask video next to it",
    "nodes": columns(
        [*_cogvideox_loaders(), concept_list("fox, snow, trees, sky"),
         node("patch", "ConceptAttentionPatchModel", size=[340, 260],
              layers="last 10", start_percent=0.0, end_percent=1.0)],
        [node("prompt", "CLIPTextEncode", size=[340, 150],
              text="a red fox trotting through fresh snow between tall pine trees, soft morning light, "
                   "clear blue sky, the camera follows the fox"),
         node("negative", "CLIPTextEncode", size=[340, 110], text="blurry, low quality, distorted, flickering"),
         node("latent", "EmptyHunyuanLatentVideo", size=[340, 130], width=720, height=480, length=49,
              batch_size=1),
         sampler(seed=42, steps=30, cfg=6.0),
         node("decode", "VAEDecode", size=[340, 46])],
        [*sampling_maps_nodes("concept_saliency/fox_clip"),
         node("clip_video", "CreateVideo", size=[320, 102], fps=8.0),
         node("save_clip", "SaveVideo", size=[320, 280], filename_prefix="cogvideox/fox")],
        mask_video_nodes({"concepts": "fox", "method": "mean"}, 8.0, "cogvideox/fox_mask"),
        note_node=note(COGVIDEOX_GENERATE_NOTE)),
    "links": [
        *(("clip", "CLIP", to, "clip") for to in ("concepts", "prompt", "negative")),
        ("unet", "MODEL", "patch", "model"),
        ("concepts", "concepts", "patch", "concepts"),
        ("patch", "model", "sampler", "model"),
        ("prompt", "CONDITIONING", "sampler", "positive"),
        ("negative", "CONDITIONING", "sampler", "negative"),
        ("latent", "LATENT", "sampler", "latent_image"),
        *decode_links(),
        ("decode", "IMAGE", "clip_video", "images"),
        ("clip_video", "VIDEO", "save_clip", "video"),
        *sampling_maps_links(),
        ("maps", "saliency", "save_maps", "saliency"),
        ("maps", "saliency", "mask", "saliency"),
        ("decode", "IMAGE", "mask", "image"),
        *mask_video_links(),
    ],
    "groups": [],
    "thumbnail": {"picture": "save_clip", "saliency": "maps", "concept": "fox", "mask": "save_mask"},
}

COGVIDEOX_CLIP_MASK = {
    "name": "cogvideox_clip_concept_mask",
    "file": "CogVideoX Clip Concept Mask",
    "title": "CogVideoX: mask a concept in an existing clip (a mask video)",
    "nodes": columns(
        [*_cogvideox_loaders(), node("load", "LoadVideo", size=[320, 380], file="example.mp4")],
        [concept_list("dog, person, grass, sky"),
         node("components", "GetVideoComponents", size=[340, 130]),
         node("frames", "ImageFromBatch", size=[340, 82], batch_index=0, length=49),
         node("scale", "ImageScale", size=[340, 130], upscale_method="lanczos", width=720, height=480,
              crop="center")],
        [saliency_node()],
        mask_video_nodes({"concepts": "dog", "method": "mean", "grow": 4, "feather": 2.0}, None,
                         "cogvideox/clip_mask"),
        note_node=note(COGVIDEOX_CLIP_NOTE)),
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("load", "VIDEO", "components", "video"),
        ("components", "images", "frames", "image"),
        ("frames", "IMAGE", "scale", "image"),
        *saliency_links(picture="scale"),
        *mask_links(picture="scale", shown_in=None),
        *mask_video_links(fps_from=("components", "fps")),
    ],
    "groups": [],
    "thumbnail": {"picture": "load", "saliency": "saliency", "concept": "dog", "mask": "save_mask"},
}

EXAMPLES = [FLUX_MASK_INPAINT, FLUX_GENERATE_INSPECT, SD35_REGIONAL_EDIT, FLUX_ARGMAX_SEGMENTATION,
            FLUX2_KLEIN_MASK_EDIT, QWEN_IMAGE_EDIT_MASK_EDIT, COGVIDEOX_GENERATE_MASK_VIDEO, COGVIDEOX_CLIP_MASK]

FLUX_FILES = {"flux1-dev.safetensors", "ae.safetensors", "t5xxl_fp16.safetensors", "clip_l.safetensors"}
# The loaders name their files with a download URL and the models/ folder they go to.
FLUX_MODELS = {"UNETLoader": ("flux1-dev.safetensors", "diffusion_models"),
               "DualCLIPLoader": [("t5xxl_fp16.safetensors", "text_encoders"), ("clip_l.safetensors", "text_encoders")],
               "VAELoader": ("ae.safetensors", "vae")}
FIND_CONCEPT_TYPES = {"ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionSaliencyToMask"}
SAMPLING_TYPES = {"ConceptAttentionConceptList", "ConceptAttentionPatchModel", "ConceptAttentionSamplingSaliency"}
SINGLE_CLIP_LOADERS = {"UNETLoader", "CLIPLoader", "VAELoader"}
COGVIDEOX_MODELS = {"CLIPLoader": (COGVIDEOX_TE_FILE, "text_encoders"), "VAELoader": (COGVIDEOX_VAE_FILE, "vae")}

# What the browser tier checks in each saved workflow's prompt (graphToPrompt): pack node types
# that must be there, and widget values that define the example. "saliency_room": Concept Saliency
# grows after a run (legend + maps): nothing sits that far below it in its column.
EXPECTED = {
    "flux_concept_mask_inpaint": {
        "types": FIND_CONCEPT_TYPES | {"UNETLoader", "DualCLIPLoader", "VAELoader", "SetLatentNoiseMask", "KSampler"},
        "files": FLUX_FILES, "models": FLUX_MODELS,
    },
    "flux_generate_and_inspect_concept_maps": {
        "types": SAMPLING_TYPES | {"KSampler", "UNETLoader", "DualCLIPLoader"},
        "files": FLUX_FILES, "models": FLUX_MODELS,
    },
    "sd35_concept_mask_regional_edit": {
        "types": FIND_CONCEPT_TYPES | {"ConditioningSetMask", "CheckpointLoaderSimple"},
        "files": {SD35_FP8_FILE},
        # As ComfyUI's SD3.5 templates: one public checkpoint with its text encoders, no separate (gated) clip_g.
        "models": {"CheckpointLoaderSimple": (SD35_FP8_FILE, "checkpoints")},
        "absent_types": {"TripleCLIPLoader", "CLIPLoader", "DualCLIPLoader"},
    },
    "flux_multi_concept_segmentation_argmax": {
        "types": FIND_CONCEPT_TYPES, "files": FLUX_FILES, "mask_method": "argmax", "models": FLUX_MODELS,
    },
    "flux2_klein_concept_mask_edit": {
        "types": FIND_CONCEPT_TYPES | SINGLE_CLIP_LOADERS | {
            "LoadImage", "ReferenceLatent", "SetLatentNoiseMask", "SamplerCustomAdvanced", "SaveImage"},
        "files": {"flux-2-klein-4b.safetensors", "qwen_3_4b.safetensors", "flux2-vae.safetensors"},
        "widgets": {"CLIPLoader": {"type": "flux2"}},
        "models": {"UNETLoader": ("flux-2-klein-4b.safetensors", "diffusion_models"),
                   "CLIPLoader": ("qwen_3_4b.safetensors", "text_encoders"),
                   "VAELoader": ("flux2-vae.safetensors", "vae")},
        "saliency_room": 600,
    },
    "qwen_image_edit_concept_mask": {
        "types": FIND_CONCEPT_TYPES | SINGLE_CLIP_LOADERS | {
            "LoadImage", "TextEncodeQwenImageEditPlus", "SetLatentNoiseMask", "KSampler", "ImageCompositeMasked",
            "SaveImage"},
        "files": {QWEN_IMAGE_EDIT_FILE, QWEN_IMAGE_TE_FILE, QWEN_IMAGE_VAE_FILE},
        "widgets": {"CLIPLoader": {"type": "qwen_image"}},
        "models": {"UNETLoader": (QWEN_IMAGE_EDIT_FILE, "diffusion_models"),
                   "CLIPLoader": (QWEN_IMAGE_TE_FILE, "text_encoders"),
                   "VAELoader": (QWEN_IMAGE_VAE_FILE, "vae")},
        "saliency_room": 600,
    },
    # The diffusion model file has no public link (the Note says why): only the linked files are listed.
    "cogvideox_concept_mask_video": {
        "types": SAMPLING_TYPES | SINGLE_CLIP_LOADERS | {
            "ConceptAttentionSaliencyToMask", "EmptyHunyuanLatentVideo", "KSampler", "VAEDecode", "MaskToImage",
            "CreateVideo", "SaveVideo"},
        "files": {COGVIDEOX_TE_FILE, COGVIDEOX_VAE_FILE},
        "widgets": {"CLIPLoader": {"type": "cogvideox"}, "EmptyHunyuanLatentVideo": {"length": 49}},
        "models": COGVIDEOX_MODELS,
    },
    "cogvideox_clip_concept_mask": {
        "types": FIND_CONCEPT_TYPES | SINGLE_CLIP_LOADERS | {
            "LoadVideo", "GetVideoComponents", "MaskToImage", "CreateVideo", "SaveVideo"},
        "files": {COGVIDEOX_TE_FILE, COGVIDEOX_VAE_FILE},
        "widgets": {"CLIPLoader": {"type": "cogvideox"}},
        "models": COGVIDEOX_MODELS,
        "saliency_room": 600,
    },
}

# MiniMax H3 (scripts/examples/minimax_spec.py)
EXAMPLES.append(MINIMAX_I2V_MASK_VIDEO)
EXPECTED[MINIMAX_I2V_MASK_VIDEO["name"]] = MINIMAX_EXPECTED

# SAM 3 (scripts/examples/sam3_spec.py)
EXAMPLES.append(SAM3_REFINE_INPAINT)
EXPECTED[SAM3_REFINE_INPAINT["name"]] = SAM3_EXPECTED


def file_stem(spec: dict) -> str:
    """The example's file name without .json: the template browser's title for it."""
    return spec.get("file", spec["name"])
