"""The files each example workflow needs, where they come from, and the Markdown Note each example
carries (the text a user reads first in the workflow)."""

# File names, folders and links as ComfyUI's own templates give them (comfyui-workflow-templates:
# flux_dev_full_text_to_image.json and flux_fill_inpaint_example.json for Flux.1; sd3.5_simple_example.json
# for SD3.5: Comfy-Org's public fp8 checkpoint with its three text encoders and VAE inside).
FLUX1_DEV_URL = "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors"
FLUX_TEXT_ENCODERS = "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main"
FLUX_AE_URL = "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors"
SD35_FP8_FILE = "sd3.5_large_fp8_scaled.safetensors"
SD35_FP8_URL = f"https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/{SD35_FP8_FILE}?download=true"
SD35_LARGE_PAGE = "https://huggingface.co/stabilityai/stable-diffusion-3.5-large"

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

Put this file in this folder (Load Checkpoint offers to download it when it is missing):

| file | folder |
|---|---|
| [{SD35_FP8_FILE}]({SD35_FP8_URL}) | `ComfyUI/models/checkpoints/` |

It is the checkpoint ComfyUI's own SD3.5 templates use: Stable Diffusion 3.5 Large in fp8 with its text
encoders (CLIP-L, CLIP-G, T5-XXL) and VAE inside, so Load Checkpoint's CLIP output feeds Concept List and the
prompts. Stability AI's own files ([stabilityai/stable-diffusion-3.5-large]({SD35_LARGE_PAGE}), also
medium and large turbo) are gated: accept the licence there while logged in to Hugging Face; a checkpoint
without text encoders then needs its three text encoders (clip_l, clip_g, t5xxl) loaded for its CLIP.
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
