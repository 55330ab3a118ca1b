"""JoyImage (JoyAI-Image-Edit): bit-identical pictures (with and without a reference picture), maps equal to the
independent fp64 reference (reference_joyimage: the picture first in the joint sequence, RoPE on the picture only,
the text stream's own modulation table), deliberate mistakes told apart, a re-query equal to a full run, and the
concepts' own rows in JoyImage's encoding.

Concepts come from ComfyUI's real JoyImage text encoder (JoyImageTokenizer + JoyImageTEModel over a tiny Qwen3-VL),
which cuts the 34 system-prompt tokens off its output.
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.module_caches import cached_clip_and_concepts, cleared_after_module
from concept_attention_tests.comfy.references import reference_concept_attention as ref
from concept_attention_tests.comfy.references.reference_joyimage import JOYIMAGE_DEVIATIONS, joyimage_reference
from concept_attention_tests.comfy.sampling import ModelInputs, sample
from concept_attention_tests.comfy.tiny import tiny_joyimage

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CONCEPTS = ["dog", "green grass", "sky"]
LAYERS = (0, 2)
RTOL, ATOL = 1e-5, 3e-6  # the other dual-stream families' tolerance

_clip, _concepts = cached_clip_and_concepts(tiny_joyimage.joyimage_clip, CONCEPTS)


@functools.cache
def _reference_model():
    return tiny_joyimage.joyimage_model(seed=36, std=0.04)


_module_scope = cleared_after_module(_clip, _concepts, _reference_model)


def _patched(model):
    return install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 1, 2)))


# ---------------------------------------------------------------------------------------------
# the picture does not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_joyimage_bit_identical(dtype):
    model = tiny_joyimage.joyimage_model(dtype=dtype)
    shape = (2, 16, 1, 6, 10)  # batch 2, non-square, cond + uncond below
    plain = sample(model, _clip(), latent_shape=shape, cfg=3.0)
    patched, session = _patched(model)
    out = sample(patched, _clip(), latent_shape=shape, cfg=3.0)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    saliency = session.records[-1].saliency
    assert saliency.maps.shape == (2, 3, 3, 5) and saliency.metadata["model_family"] == "JoyImage"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_joyimage_with_reference_image_bit_identical(dtype):
    """The reference latent's tokens follow the picture's (the next band on the frame axis), before the text; the
    maps cover the picture. An odd width: the picture is padded to whole patches."""
    model = tiny_joyimage.joyimage_model(dtype=dtype, seed=1)
    refs = [torch.randn(1, 16, 1, 4, 6, generator=torch.Generator().manual_seed(3))]
    kwargs = dict(latent_shape=(2, 16, 1, 6, 9), cfg=2.0, reference_latents=refs)
    plain = sample(model, _clip(), **kwargs)
    patched, session = _patched(model)
    out = sample(patched, _clip(), **kwargs)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    assert session.records[-1].saliency.maps.shape == (2, 3, 3, 5)  # the picture's tokens, not the reference's


# ---------------------------------------------------------------------------------------------
# maps == the independent reference
# ---------------------------------------------------------------------------------------------


def _encode(model, latent, concepts=None, budget=0, reference_latents=None, **option_kw):
    from concept_attention.concept_patch.encode import encode_saliency

    clip = _clip()
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass under the sky"))
    if reference_latents is not None:
        cond = [[c, {**d, "reference_latents": reference_latents}] for c, d in cond]
    option_kw.setdefault("layers", LAYERS)
    with ModelInputs(model.model.diffusion_model) as inputs:
        saliency = encode_saliency(model, concepts or _concepts(), latent, SaliencyOptions(**option_kw),
                                   conditioning=cond, cache_budget=budget)
    return saliency, inputs


def _reference(model, inputs, space="output", softmax=True, deviation=None):
    return joyimage_reference(model.model.diffusion_model, inputs.get(0, "x"), inputs.get(1, "timestep"),
                              inputs.get(2, "context"), _concepts().embeddings, LAYERS, space=space,
                              softmax=softmax, deviation=deviation, ref_latents=inputs.get(3, "ref_latents"))


def _assert_close(product, expected, what):
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    assert tuple(product.shape) == tuple(expected.shape)
    assert (diff <= atol + RTOL * expected.abs()).all(), f"{what}: max |product - reference| = {diff.max():.3e}"


def _latent():
    return torch.randn(2, 16, 1, 7, 10, generator=torch.Generator().manual_seed(11))  # odd height: padded


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
def test_joyimage_maps_match_reference(space, softmax):
    model = _reference_model()
    saliency, inputs = _encode(model, _latent(), space=space, softmax=softmax)
    assert saliency.maps.shape == (2, 3, 4, 5)
    _assert_close(saliency.maps, _reference(model, inputs, space, softmax).maps, f"JoyImage {space}")


def test_joyimage_edit_maps_match_reference():
    """An edit: the reference picture's tokens follow the picture's (odd sizes, padded; the next frame position);
    the concepts attend to the picture's tokens only and the maps cover them."""
    model = _reference_model()
    refs = [torch.randn(1, 16, 1, 5, 7, generator=torch.Generator().manual_seed(4))]
    saliency, inputs = _encode(model, _latent(), reference_latents=refs)
    assert len(inputs.get(3, "ref_latents")) == 1 and saliency.maps.shape == (2, 3, 4, 5)
    _assert_close(saliency.maps, _reference(model, inputs).maps, "JoyImage edit")


@pytest.mark.parametrize("deviation", JOYIMAGE_DEVIATIONS)
def test_joyimage_comparison_catches_plausible_mistakes(deviation):
    """Concepts modulated with the image stream's rows, the picture read as if the text came first, or concepts
    updated without gates: each moves the maps well outside the tolerance (on the raw output-space scores, which
    the softmax over three near-alike concepts of a tiny random model would flatten)."""
    model = _reference_model()
    saliency, inputs = _encode(model, _latent(), softmax=False)
    wrong = _reference(model, inputs, softmax=False, deviation=deviation).maps
    atol = ATOL * max(1.0, float(wrong.abs().max()))
    assert (saliency.maps.double() - wrong).abs().max() > 30 * atol


# ---------------------------------------------------------------------------------------------
# re-query
# ---------------------------------------------------------------------------------------------


def test_joyimage_requery_equals_a_full_run():
    from concept_attention.concept_patch.requery import cache as image_stream_cache

    model = _reference_model()
    second = encode_concepts(_clip(), ["dog", "collar", "leash", "green grass"], pooling="first")
    image_stream_cache.CACHE.clear()
    try:
        first, _ = _encode(model, _latent(), budget=1 << 30)
        assert first.metadata["requery"] is False
        calls = []
        handle = model.model.diffusion_model.double_blocks[0].register_forward_pre_hook(lambda *a: calls.append(1))
        try:
            requery, _ = _encode(model, _latent(), second, budget=1 << 30, layers=(1,), space="value", softmax=False)
        finally:
            handle.remove()
        assert requery.metadata["requery"] is True and not calls
        fresh, _ = _encode(model, _latent(), second, budget=0, layers=(1,), space="value", softmax=False)
        assert fresh.metadata["requery"] is False
        assert torch.equal(requery.maps, fresh.maps)
    finally:
        image_stream_cache.CACHE.clear()


# ---------------------------------------------------------------------------------------------
# concept encoding
# ---------------------------------------------------------------------------------------------


def test_joyimage_concepts_come_from_its_encoder_at_its_layer():
    """JoyImage's encoder cuts the system prompt: the user turn's "<|im_start|>user\\n" (two tokens) opens the
    conditioning, the concept's own tokens follow. Its states are Qwen3-VL 8B's last layer, before the final norm."""
    concepts = encode_concepts(_clip(), CONCEPTS, pooling="first")
    assert concepts.positions[0].item() == 2.0
    assert concepts.text_space == "qwen3vl_8b" and concepts.context_dim == tiny_joyimage.JOYIMAGE_CONTEXT_DIM
    assert concepts.text_layer == "hidden -1"


def test_concepts_of_another_encoder_are_refused():
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError
    from concept_attention_tests.comfy.tiny import tiny_text_encoders

    other = encode_concepts(tiny_text_encoders.mage_flow_clip(), ["dog"])
    with pytest.raises(ConceptAttentionError, match="qwen3vl_4b.*qwen3vl_8b"):
        install_concept_attention(tiny_joyimage.joyimage_model(depth=1), other, SaliencyOptions(layers=(0,)))
