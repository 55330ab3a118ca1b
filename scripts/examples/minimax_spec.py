"""The MiniMax H3 example: ComfyUI's stock `video_minimax_h3_i2v` template (Comfy-Org/workflow_templates), its nodes
as they are - Load Image -> MiniMax H3 Image to Video, Load Diffusion Model / Load CLIP (type `minimax`) / the video and
the audio Load VAE with the same files and `properties.models` links, RandomNoise + Basic Guider + KSamplerSelect
(res_multistep) + BasicScheduler (simple, 25 steps) -> SamplerCustomAdvanced -> Separate AV Latent -> VAE Decode /
VAE Decode Audio -> Create Video (24 fps) -> Save Video - without its subgraph wrapper, its Resolution Selector and
its duration expression (width, height and length are set on MiniMax H3 Image to Video itself); plus the pack's
nodes: the concept mask video of the generated clip next to it, with the part of the soundtrack where the concept
is heard. Laid out in columns (parts.columns) so that it opens readable, not in the stock template's groups.

A spec as scripts/examples/specs.py describes; registered there (EXAMPLES, EXPECTED).
"""

from __future__ import annotations

from .parts import SAMPLING_SALIENCY_SIZE, columns, concept_list, models, node, note

MINIMAX_REPO = "https://huggingface.co/Comfy-Org/MiniMax-H3/resolve/main"
MINIMAX_MODEL_FILE = "minimax_h3_fl2va_pruned_int8_convrot.safetensors"
MINIMAX_TE_FILE = "qwen3vl_32b_minimax_h3_int8_convrot.safetensors"
MINIMAX_VAE_FILE = "minimax_h3_video_vae_fp16.safetensors"
MINIMAX_AUDIO_VAE_FILE = "minimax_h3_audio_vae_fp32.safetensors"
MINIMAX_FILES = {MINIMAX_MODEL_FILE: "diffusion_models", MINIMAX_TE_FILE: "text_encoders", MINIMAX_VAE_FILE: "vae",
                 MINIMAX_AUDIO_VAE_FILE: "vae"}


def _link(name: str) -> str:
    return f"[{name}]({MINIMAX_REPO}/{MINIMAX_FILES[name]}/{name})"


MINIMAX_NOTE = f"""# MiniMax H3: a clip with sound, its concept mask video and the concept's soundtrack

ComfyUI's MiniMax H3 image-to-video template, as it is, plus ConceptAttention:

1. Pick the first frame in Load Image (or disconnect it for text to video) and write the prompt, the sounds
   included. In Concept List name what to follow in the clip, in picture and in sound (`dog, grass, sky, barking`).
2. Run. Concept Attention (Generation) lets the sampler record where each concept is in every frame and along the
   soundtrack; the clip and its sound are the same as without it. Create Video + Save Video save the clip.
3. Concept Saliency from Sampling shows the regions and each concept's map, animated, with the soundtrack under
   every panel as a strip of the concepts' colours (a white playhead marks the frame).
4. Next to the clip: Saliency to Mask gives one mask per decoded frame (`dog`); Concept Soundtrack Curve gives
   the concept's share of the audio per audio frame (40 a second) as a MASK curve, and Apply Soundtrack Curve to
   Audio keeps the stretches of the soundtrack where it is heard. Convert Mask to Image, Create Video and Save
   Video save the mask video with that sound.

The soundtrack curve is a share among the concepts listed, not a loudness and not a source separation
(docs/soundtrack.md). Sampling as the stock template: res_multistep, `simple`, 25 steps; length 124 frames (about
5 s at 24 fps; MiniMax clips are 17k + 5 frames), 1344x768. Concept Saliency from Sampling grows after a run:
leave the space below it free.

## Models

| file | folder |
|---|---|
| {_link(MINIMAX_MODEL_FILE)} | `ComfyUI/models/diffusion_models/` |
| {_link(MINIMAX_TE_FILE)} (Load CLIP, type `minimax`) | `ComfyUI/models/text_encoders/` |
| {_link(MINIMAX_VAE_FILE)} | `ComfyUI/models/vae/` |
| {_link(MINIMAX_AUDIO_VAE_FILE)} | `ComfyUI/models/vae/` |
"""


def _props(name: str) -> dict:
    return models((name, f"{MINIMAX_REPO}/{MINIMAX_FILES[name]}/{name}", MINIMAX_FILES[name]))


MINIMAX_I2V_MASK_VIDEO = {
    "name": "minimax_h3_concept_mask_video",
    "file": "MiniMax H3 Mask Video and Sound",
    "title": "MiniMax H3: image to video with sound, a concept mask video and the concept's soundtrack",
    "nodes": columns(
        # Models; ConceptAttention's concepts and the patched model
        [node("unet", "UNETLoader", size=[300, 82], properties=_props(MINIMAX_MODEL_FILE),
              unet_name=MINIMAX_MODEL_FILE, weight_dtype="default"),
         node("clip", "CLIPLoader", size=[300, 106], properties=_props(MINIMAX_TE_FILE),
              clip_name=MINIMAX_TE_FILE, type="minimax"),
         node("vae", "VAELoader", size=[300, 58], properties=_props(MINIMAX_VAE_FILE), vae_name=MINIMAX_VAE_FILE),
         node("audio_vae", "VAELoader", size=[300, 58], title="Load VAE (audio)",
              properties=_props(MINIMAX_AUDIO_VAE_FILE), vae_name=MINIMAX_AUDIO_VAE_FILE),
         concept_list("dog, grass, sky, barking", width=300),
         node("patch", "ConceptAttentionPatchModel", size=[300, 260], layers="last 10", start_percent=0.0,
              end_percent=1.0)],
        # Conditioning and the sampler's settings
        [node("image", "LoadImage", size=[300, 314], image="example.png"),
         node("i2v", "MiniMaxH3ImageToVideo", size=[300, 360],
              prompt="A golden retriever runs across a sunny park lawn toward the camera and barks twice, tail "
                     "wagging; blue sky, soft afternoon light, the camera holds still.\nAudio: two loud dog barks, "
                     "paws on grass, distant birdsong, a light wind.",
              width=1344, height=768, length=124),
         node("noise", "RandomNoise", size=[300, 82], noise_seed=1),
         node("sampler_select", "KSamplerSelect", size=[300, 58], sampler_name="res_multistep"),
         node("scheduler", "BasicScheduler", size=[300, 106], scheduler="simple", steps=25, denoise=1.0)],
        # Sampling, decoding and the clip (Save Video last: it grows after a run)
        [node("guider", "BasicGuider", size=[300, 46]),
         node("sampler", "SamplerCustomAdvanced", size=[300, 130]),
         node("separate", "LTXVSeparateAVLatent", size=[300, 46]),
         node("decode", "VAEDecode", size=[300, 46]),
         node("decode_audio", "VAEDecodeAudio", size=[300, 46]),
         node("clip_video", "CreateVideo", size=[300, 102], fps=24.0),
         node("save_clip", "SaveVideo", size=[300, 200], filename_prefix="video/MiniMax_H3")],
        # The mask video with the concept's part of the soundtrack
        [node("mask", "ConceptAttentionSaliencyToMask", size=[300, 300], concepts="dog", method="mean"),
         node("mask_image", "MaskToImage", size=[300, 26]),
         node("curve", "ConceptAttentionSoundtrackCurve", size=[300, 190], concept="dog", mode="share"),
         node("gated", "ConceptAttentionApplySoundtrackCurve", size=[300, 82], floor=0.1),
         node("mask_video", "CreateVideo", size=[300, 102], fps=24.0),
         node("save_mask", "SaveVideo", size=[300, 200], filename_prefix="video/MiniMax_H3_dog_mask")],
        # The concept maps (alone: they grow after a run)
        [node("maps", "ConceptAttentionSamplingSaliency", size=SAMPLING_SALIENCY_SIZE)],
        note_node=note(MINIMAX_NOTE), note_width=260),
    "links": [
        ("clip", "CLIP", "concepts", "clip"),
        ("unet", "MODEL", "patch", "model"),
        ("concepts", "concepts", "patch", "concepts"),
        ("clip", "CLIP", "i2v", "clip"),
        ("vae", "VAE", "i2v", "vae"),
        ("image", "IMAGE", "i2v", "first_frame"),
        ("patch", "model", "guider", "model"),
        ("i2v", "positive", "guider", "conditioning"),
        ("unet", "MODEL", "scheduler", "model"),
        ("noise", "NOISE", "sampler", "noise"),
        ("guider", "GUIDER", "sampler", "guider"),
        ("sampler_select", "SAMPLER", "sampler", "sampler"),
        ("scheduler", "SIGMAS", "sampler", "sigmas"),
        ("i2v", "LATENT", "sampler", "latent_image"),
        ("sampler", "output", "separate", "av_latent"),
        ("separate", "video_latent", "decode", "samples"),
        ("vae", "VAE", "decode", "vae"),
        ("separate", "audio_latent", "decode_audio", "samples"),
        ("audio_vae", "VAE", "decode_audio", "vae"),
        ("decode", "IMAGE", "clip_video", "images"),
        ("decode_audio", "AUDIO", "clip_video", "audio"),
        ("clip_video", "VIDEO", "save_clip", "video"),
        ("patch", "model", "maps", "model"),
        ("sampler", "output", "maps", "latent"),
        ("decode", "IMAGE", "maps", "image"),
        ("maps", "saliency", "mask", "saliency"),
        ("decode", "IMAGE", "mask", "image"),
        ("mask", "mask", "mask_image", "mask"),
        ("maps", "saliency", "curve", "saliency"),
        ("decode_audio", "AUDIO", "gated", "audio"),
        ("curve", "curve", "gated", "curve"),
        ("mask_image", "IMAGE", "mask_video", "images"),
        ("gated", "audio", "mask_video", "audio"),
        ("mask_video", "VIDEO", "save_mask", "video"),
    ],
    "groups": [],
    # With the tiny MiniMax H3's usual seed one concept wins every token: the card would show one colour.
    "tiny": {"ConceptAttentionTestTinyMiniMax": {"seed": 1}},
    "thumbnail": {"picture": "image", "saliency": "maps", "concept": "dog"},
}

MINIMAX_EXPECTED = {
    "types": {"ConceptAttentionConceptList", "ConceptAttentionPatchModel", "ConceptAttentionSamplingSaliency",
              "ConceptAttentionSaliencyToMask", "ConceptAttentionSoundtrackCurve",
              "ConceptAttentionApplySoundtrackCurve", "UNETLoader", "CLIPLoader", "VAELoader", "LoadImage",
              "MiniMaxH3ImageToVideo", "BasicGuider", "SamplerCustomAdvanced", "LTXVSeparateAVLatent", "VAEDecode",
              "VAEDecodeAudio", "MaskToImage", "CreateVideo", "SaveVideo"},
    "files": set(MINIMAX_FILES),
    "widgets": {"CLIPLoader": {"type": "minimax"}, "MiniMaxH3ImageToVideo": {"length": 124},
                "KSamplerSelect": {"sampler_name": "res_multistep"}},
    # The two Load VAE nodes name different files (video, audio): their links are checked with every file's.
    "models": {"UNETLoader": (MINIMAX_MODEL_FILE, "diffusion_models"),
               "CLIPLoader": (MINIMAX_TE_FILE, "text_encoders")},
}
