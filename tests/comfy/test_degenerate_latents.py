"""Degenerate latents in encode mode (issue 24): an empty one (batch, frames or size 0), a frame axis on a picture
model, or another model's channel count gets a message naming the shape and what the model takes, never a raw
reshape, unpack, convolution or matmul error; the model goes on working.

What the model takes comes from its own latent_format (channels, frame axis or none), as the stock sampler reads
it; the stock sampler fails on these latents too (CogVideoX's 4-channel latent in its latent scaling), so refusing
them matches it.
"""

from __future__ import annotations

import functools
import re

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.tiny import tiny_cogvideox, tiny_hunyuan_video, tiny_models, tiny_text_encoders


@functools.cache
def _model_and_concepts(family: str):
    model, clip = {
        "flux": lambda: (tiny_models.flux_model(), tiny_models.flux_clip()),
        "cogvideox": lambda: (tiny_cogvideox.cogvideox_model(), tiny_cogvideox.cogvideox_clip()),
        "hunyuan_video": lambda: (tiny_hunyuan_video.hunyuan_video_model(), tiny_text_encoders.hunyuan_video_clip()),
    }[family]()
    return model, encode_concepts(clip, ["dog", "sky"])


_clear = cleared_after_module(_model_and_concepts)


def _encode(family: str, shape):
    model, concepts = _model_and_concepts(family)
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    return encode_saliency(model, concepts, latent, SaliencyOptions(layers=(0,)))


EMPTY = [
    ((1, 16, 0, 4, 4), "its frames size is 0"),
    ((0, 16, 2, 4, 4), "its batch size is 0"),
    ((1, 16, 2, 0, 0), "its height and width sizes are 0"),
    ((0, 16, 4, 4), "its batch size is 0"),
    ((1, 16, 0, 4), "its height size is 0"),
]


@pytest.mark.parametrize("family", ["cogvideox", "hunyuan_video", "flux"])
@pytest.mark.parametrize("shape, problem", EMPTY, ids=[str(s) for s, _ in EMPTY])
def test_an_empty_latent_is_refused_naming_its_shape(family, shape, problem):
    with pytest.raises(ConceptAttentionError, match=re.escape(f"the latent has shape {shape}: {problem}")):
        _encode(family, shape)


@pytest.mark.parametrize("family, shape, message", [
    ("flux", (1, 16, 1, 4, 4), "this latent has shape (1, 16, 1, 4, 4), but Flux.1 takes a latent "
                               "[batch, 16, height, width]: a picture's latent has no frame axis"),
    ("flux", (1, 4, 4, 4), "this latent has 4 channels (shape (1, 4, 4, 4)), but Flux.1 takes 16, "
                           "[batch, 16, height, width]"),
    ("hunyuan_video", (1, 4, 2, 4, 4), "this latent has 4 channels (shape (1, 4, 2, 4, 4)), but HunyuanVideo takes "
                                       "16, [batch, 16, frames, height, width]"),
    ("cogvideox", (1, 4, 2, 4, 4), "this latent has 4 channels (shape (1, 4, 2, 4, 4)), but CogVideoX takes 16, "
                                   "[batch, 16, frames, height, width]"),
])
def test_a_latent_the_model_does_not_take_is_refused_with_what_it_takes(family, shape, message):
    with pytest.raises(ConceptAttentionError, match=re.escape(message)):
        _encode(family, shape)
    good = (1, 16, 4, 4) if family == "flux" else (1, 16, 2, 4, 4)
    assert torch.isfinite(_encode(family, good).maps).all()  # and the model goes on working
