"""Wan 2.2 14B's two-expert sampling queued over HTTP on a real ComfyUI server, as the stock template samples it: a
high-noise expert's KSamplerAdvanced (steps 0-2 of 4, leftover noise returned) and a low-noise expert's
KSamplerAdvanced from that latent (steps 2-4, no noise added), each expert patched by Concept Attention (Generation)
from one Concept List, then Concept Saliency from Sampling with both models -> Save Saliency, and Saliency to Mask ->
Mask To Image -> a lossless animated WebP, the mask video. The same chain on the unpatched experts saves its latent:
the patched chain's is the same, bit for bit. The tiny Wan experts and UMT5 text encoder come from the fixture pack
tests/server/fixture_nodes/concept_attention_wan_test_nodes.
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

# 48x32 px frames -> latent 6x4 -> a 3x2 token grid per frame; 9 frames -> 3 latent frames, which decode to 9.
WIDTH, HEIGHT, LENGTH = 48, 32, 9
LATENT_FRAMES = (LENGTH - 1) // 4 + 1


def _chain(prefix: str, high: str, low: str, tag: str) -> dict:
    """KSamplerAdvanced on `high` for steps 0-2 of 4 (leftover noise returned), then on `low` from its latent for
    steps 2-4, the final latent saved."""
    common = dict(noise_seed=5, steps=4, cfg=3.0, sampler_name="euler", scheduler="simple",
                  positive=link("positive"), negative=link("negative"))
    return {
        f"{tag}_first": node("KSamplerAdvanced", model=link(high), add_noise="enable", latent_image=link("latent"),
                             start_at_step=0, end_at_step=2, return_with_leftover_noise="enable", **common),
        f"{tag}_second": node("KSamplerAdvanced", model=link(low), add_noise="disable",
                              latent_image=link(f"{tag}_first"), start_at_step=2, end_at_step=10000,
                              return_with_leftover_noise="disable", **common),
        f"save_{tag}_latent": node("SaveLatent", samples=link(f"{tag}_second"), filename_prefix=f"{prefix}_{tag}"),
    }


def test_two_expert_clip_to_one_saliency_and_a_mask_video(comfy_server):
    prefix = unique_prefix("wan_two_experts")
    prompt = {
        "high": node("ConceptAttentionTestTinyWan", variant="t2v", seed=51),
        "low": node("ConceptAttentionTestTinyWan", variant="t2v", seed=52),
        "clip": node("ConceptAttentionTestTinyWanClip", seed=23),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=CONCEPTS, pooling="mean"),
        **prompt_nodes(),
        "latent": node("EmptyHunyuanLatentVideo", width=WIDTH, height=HEIGHT, length=LENGTH, batch_size=1),
        "high_patch": patch_node(model="high"),
        "low_patch": patch_node(model="low"),
        **_chain(prefix, "high_patch", "low_patch", "patched"),
        **_chain(prefix, "high", "low", "plain"),
        "saliency": node("ConceptAttentionSamplingSaliency", model=link("low_patch"), latent=link("patched_second"),
                         model_2=link("high_patch")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix),
        "mask": to_mask_node(),
        "mask_image": node("MaskToImage", mask=link("mask")),
        "save_mask": node("SaveAnimatedWEBP", images=link("mask_image"), filename_prefix=prefix + "_mask", fps=8.0,
                          lossless=True, quality=100, method="default"),
    }
    result = require_ok(comfy_server.run_prompt(prompt), comfy_server)

    patched = read_latent(output_files(comfy_server, result, "save_patched_latent", "latents")[0])
    plain = read_latent(output_files(comfy_server, result, "save_plain_latent", "latents")[0])
    assert tuple(patched.shape) == (1, 16, LATENT_FRAMES, HEIGHT // 8, WIDTH // 8)
    assert torch.equal(patched, plain), "the patched experts must generate exactly what the plain ones do"

    from concept_attention.concept_patch.files.load import load_saliency
    from concept_attention.concept_patch.maps.masks import saliency_to_mask

    saliency = load_saliency(str(saliency_file(comfy_server, result, "save_maps")))
    assert saliency.names == CONCEPT_NAMES and saliency.is_video and saliency.frames == LENGTH
    assert tuple(saliency.maps.shape) == (1, len(CONCEPT_NAMES), LATENT_FRAMES, HEIGHT // 16, WIDTH // 16)
    assert saliency.metadata["model_family"] == "Wan 2.1/2.2" and saliency.metadata["experts"] == 2
    assert saliency.metadata["expert_model_calls_used"] == [2, 2]

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


def test_vace_inpaints_the_concept_of_a_clip(comfy_server):
    """The VACE use: a Wan VACE clip generated with Concept Attention (Generation) -> Concept Saliency from Sampling ->
    Saliency to Mask (one mask per frame) -> the stock WanVaceToVideo as its control masks, over the decoded clip as
    its control video -> KSampler on the VACE model -> TrimVideoLatent -> VAE Decode -> a saved clip of as many
    frames. (The tiny Wan 2.1 VAE is the example fixture pack's, in the Wan 2.1 layout.)"""
    prefix = unique_prefix("wan_vace_inpaint")
    common = dict(seed=3, steps=3, cfg=3.0, sampler_name="euler", scheduler="simple", denoise=1.0)
    prompt = {
        "vace": node("ConceptAttentionTestTinyWan", variant="vace", seed=53),
        "clip": node("ConceptAttentionTestTinyWanClip", seed=23),
        "vae": node("ConceptAttentionTestTinyQwenImageVAE", seed=0),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=CONCEPTS, pooling="mean"),
        **prompt_nodes(),
        "latent": node("EmptyHunyuanLatentVideo", width=WIDTH, height=HEIGHT, length=LENGTH, batch_size=1),
        "patch": patch_node(model="vace"),
        "clip_latent": node("KSampler", model=link("patch"), positive=link("positive"), negative=link("negative"),
                            latent_image=link("latent"), **common),
        "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("clip_latent")),
        "frames": node("VAEDecode", samples=link("clip_latent"), vae=link("vae")),
        "mask": to_mask_node(),
        "vace_conditioning": node("WanVaceToVideo", positive=link("positive"), negative=link("negative"),
                                  vae=link("vae"), width=WIDTH, height=HEIGHT, length=LENGTH, batch_size=1,
                                  strength=1.0, control_video=link("frames"), control_masks=link("mask")),
        "inpainted": node("KSampler", model=link("vace"), positive=link("vace_conditioning", 0),
                          negative=link("vace_conditioning", 1), latent_image=link("vace_conditioning", 2), **common),
        "trimmed": node("TrimVideoLatent", samples=link("inpainted"), trim_amount=link("vace_conditioning", 3)),
        "inpainted_frames": node("VAEDecode", samples=link("trimmed"), vae=link("vae")),
        "save_clip": node("SaveAnimatedWEBP", images=link("inpainted_frames"), filename_prefix=prefix, fps=8.0,
                          lossless=True, quality=100, method="default"),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix),
    }
    result = require_ok(comfy_server.run_prompt(prompt), comfy_server)

    from PIL import Image

    from concept_attention.concept_patch.files.load import load_saliency

    saliency = load_saliency(str(saliency_file(comfy_server, result, "save_maps")))
    assert saliency.metadata["model_family"] == "Wan VACE" and saliency.frames == LENGTH
    assert tuple(saliency.maps.shape) == (1, len(CONCEPT_NAMES), LATENT_FRAMES, HEIGHT // 16, WIDTH // 16)
    [clip] = output_files(comfy_server, result, "save_clip")
    with Image.open(clip) as im:
        assert im.size == (WIDTH, HEIGHT)
        assert sum(round(f.info["duration"] * 8.0 / 1000) for f in _frames(im)) == LENGTH


def _frames(im):
    from PIL import ImageSequence

    for frame in ImageSequence.Iterator(im):
        frame.load()
        yield frame
