"""LTX-2.3 text to video with audio queued over HTTP on a real ComfyUI server, with the stock LTX latent nodes: Empty LTXV
Latent Video and an audio latent joined by LTXVConcatAVLatent -> Concept Attention (Generation) -> KSampler ->
LTXVSeparateAVLatent -> Save Latent (video and audio), and Concept Saliency from Sampling -> Save Saliency, and Saliency
to Mask -> Mask To Image -> a lossless animated WebP, the mask video. The same chain on the unpatched model saves its
latents: the patched chain's are the same, bit for bit. The tiny LTX-2.3 model, its Gemma 3 text encoder and the audio
latent come from the fixture pack tests/server/fixture_nodes/concept_attention_ltx2_test_nodes.
"""

from __future__ import annotations

import numpy as np
import torch

from concept_attention_tests.server.workflows import (
    CONCEPT_NAMES,
    CONCEPTS,
    link,
    node,
    output_files,
    patch_node,
    prompt_nodes,
    read_latent,
    require_ok,
    saliency_file,
    to_mask_node,
    unique_prefix,
)

# 192x160 px frames -> a 6x5 latent (32 px a cell, 1x1x1 patches: a 6x5 token grid); 17 frames -> 3 latent frames,
# which decode to 8 (3 - 1) + 1 = 17.
WIDTH, HEIGHT, LENGTH, AUDIO_FRAMES = 192, 160, 17, 5
LATENT_FRAMES = (LENGTH - 1) // 8 + 1


def _chain(prefix: str, model: str, tag: str) -> dict:
    return {
        f"{tag}_sampled": node("KSampler", model=link(model), positive=link("positive"), negative=link("negative"),
                               latent_image=link("latent"), seed=5, steps=2, cfg=3.0, sampler_name="euler",
                               scheduler="simple", denoise=1.0),
        f"{tag}_separate": node("LTXVSeparateAVLatent", av_latent=link(f"{tag}_sampled")),
        f"save_{tag}_video": node("SaveLatent", samples=link(f"{tag}_separate", 0), filename_prefix=f"{prefix}_{tag}_v"),
        f"save_{tag}_audio": node("SaveLatent", samples=link(f"{tag}_separate", 1), filename_prefix=f"{prefix}_{tag}_a"),
    }


def test_av_clip_to_saliency_and_a_mask_video(comfy_server):
    prefix = unique_prefix("ltx2_av")
    prompt = {
        "unet": node("ConceptAttentionTestTinyLTX2", variant="2.3", seed=61),
        "clip": node("ConceptAttentionTestTinyLTX2Clip", variant="2.3", seed=23),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=CONCEPTS, pooling="mean"),
        **prompt_nodes(),
        "video": node("EmptyLTXVLatentVideo", width=WIDTH, height=HEIGHT, length=LENGTH, batch_size=1),
        "audio": node("ConceptAttentionTestTinyLTX2AudioLatent", frames=AUDIO_FRAMES),
        "latent": node("LTXVConcatAVLatent", video_latent=link("video"), audio_latent=link("audio")),
        "patch": patch_node(model="unet"),
        **_chain(prefix, "patch", "patched"),
        **_chain(prefix, "unet", "plain"),
        "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("patched_sampled")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix),
        "mask": to_mask_node(),
        "mask_image": node("MaskToImage", mask=link("mask")),
        "save_mask": node("SaveAnimatedWEBP", images=link("mask_image"), filename_prefix=prefix + "_mask", fps=8.0,
                          lossless=True, quality=100, method="default"),
    }
    result = require_ok(comfy_server.run_prompt(prompt), comfy_server)

    for stream, shape in (("video", (1, 128, LATENT_FRAMES, HEIGHT // 32, WIDTH // 32)), ("audio", (1, 8, 5, 16))):
        [patched_file] = output_files(comfy_server, result, f"save_patched_{stream}", "latents")
        [plain_file] = output_files(comfy_server, result, f"save_plain_{stream}", "latents")
        patched, plain = read_latent(patched_file), read_latent(plain_file)
        assert tuple(patched.shape) == shape
        assert torch.equal(patched, plain), f"the patched model must generate exactly what the plain one does ({stream})"

    from concept_attention.concept_patch.files.load import load_saliency
    from concept_attention.concept_patch.maps.masks import saliency_to_mask

    saliency = load_saliency(str(saliency_file(comfy_server, result, "save_maps")))
    assert saliency.names == CONCEPT_NAMES and saliency.is_video and saliency.frames == LENGTH
    assert tuple(saliency.maps.shape) == (1, len(CONCEPT_NAMES), LATENT_FRAMES, HEIGHT // 32, WIDTH // 32)
    assert saliency.metadata["model_family"] == "LTX-2" and saliency.metadata["space"] == "output"

    from PIL import Image, ImageSequence

    [webp] = output_files(comfy_server, result, "save_mask")
    frames = []
    with Image.open(webp) as im:
        for frame in ImageSequence.Iterator(im):
            frame.load()  # the encoder merges identical neighbours into one longer frame: expand it by its duration
            frames += [np.asarray(frame.convert("L"))] * round(frame.info["duration"] * 8.0 / 1000)
    expected = np.clip(255.0 * saliency_to_mask(saliency, "dog", method="relative_mean").numpy(), 0, 255)
    assert len(frames) == LENGTH and expected.shape == (LENGTH, HEIGHT, WIDTH)
    np.testing.assert_array_equal(np.stack(frames), expected.astype(np.uint8))
