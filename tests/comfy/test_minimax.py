"""MiniMax H3: the video and the audio do not change with the patch, the maps equal the independent fp64 reference
(reference_minimax.py), and deliberate mistakes (the video's modulation for the concepts, the audio rows in the
maps) are caught.

The model is ComfyUI's own class at a tiny size (tiny_minimax.py), sampled by ComfyUI's stock sampling on the
packed [video, audio] latent; concepts come from ComfyUI's MiniMax H3 text encoder with a tiny Qwen3-VL.
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention_tests.comfy.module_caches import cached_clip_and_concepts, cleared_after_module
from concept_attention_tests.comfy.tiny import tiny_minimax

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog running on green grass under the sky"
NEGATIVE = "blurry"
RTOL, ATOL = 1e-5, 3e-6

_clip, _concepts = cached_clip_and_concepts(tiny_minimax.minimax_clip, CONCEPTS)


@functools.cache
def _reference_model():
    return tiny_minimax.minimax_model(seed=41)


_module_scope = cleared_after_module(_clip, _concepts, _reference_model)


def _sample(model, latent, steps=2, cfg=3.0, seed=3, positive=None):
    import comfy.sample

    clip = _clip()
    pos = positive or clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize(NEGATIVE))
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", pos, neg, latent, seed=seed,
                               disable_pbar=True)


# ---------------------------------------------------------------------------------------------
# the video and the audio do not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_t2v_video_and_audio_bit_identical(dtype):
    """Text to video with audio, cfg > 1, 3 latent frames of a non-square 6x10 latent (odd token width)."""
    model = tiny_minimax.minimax_model(dtype=dtype)
    latent = tiny_minimax.empty_av_latent(frames=3, height=6, width=10)
    plain = _sample(model, latent).unbind()
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 1, 2)))
    out = _sample(patched, latent).unbind()
    assert all(torch.isfinite(t).all() for t in plain)
    assert torch.equal(plain[0], out[0]) and torch.equal(plain[1], out[1])
    saliency = session.records[-1].saliency
    assert saliency.maps.shape == (1, 3, 3, 3, 5)
    assert torch.isfinite(saliency.maps).all()
    assert saliency.frames == 9
    assert saliency.metadata["model_family"] == "MiniMax H3"
