"""Mage-Flow: bit-identical pictures (with and without a reference image), maps equal to the independent fp64
reference (mage_flow_reference: patch-1 tokens, Mage's image centring, zero text and concept ids, Mage's
bf16-rounded timestep features, Qwen-Image's blocks), deliberate mistakes told apart, and the concepts' own
rows in Mage's encoding.

Concepts come from ComfyUI's real Mage-Flow text encoder (MageFlowTokenizer + MageFlowTEModel over a tiny
Qwen3-VL), which cuts the system prompt and the "<|im_start|>user\\n" opening off its output.
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
from concept_attention_tests.comfy.sampling import ModelInputs, sample

# the Qwen-Image tests' tolerance
from concept_attention_tests.comfy.test_qwen_image_and_hidream import ATOL, _assert_close
from concept_attention_tests.comfy.tiny import tiny_models, tiny_text_encoders

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CONCEPTS = ["dog", "green grass", "sky"]
LAYERS = (0, 2)


_clip, _concepts = cached_clip_and_concepts(tiny_text_encoders.mage_flow_clip, CONCEPTS)


@functools.cache
def _reference_model():
    return tiny_models.mage_flow_model(seed=35)


_module_scope = cleared_after_module(_clip, _concepts, _reference_model)


def _patched(model):
    return install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 1, 2)))


# ---------------------------------------------------------------------------------------------
# the picture does not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mage_flow_bit_identical(dtype):
    model = tiny_models.mage_flow_model(dtype=dtype)
    shape = (2, 128, 6, 10)  # batch 2, non-square, cond + uncond below
    plain = sample(model, _clip(), latent_shape=shape, cfg=3.0)
    patched, session = _patched(model)
    out = sample(patched, _clip(), latent_shape=shape, cfg=3.0)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    saliency = session.records[-1].saliency
    assert saliency.maps.shape == (2, 3, 6, 10) and saliency.metadata["model_family"] == "Mage-Flow"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mage_flow_with_reference_image_bit_identical(dtype):
    """The reference latent's tokens follow the picture's (index 1 on the frame axis); the maps cover the picture."""
    model = tiny_models.mage_flow_model(dtype=dtype, seed=1)
    refs = [torch.randn(1, 128, 4, 6, generator=torch.Generator().manual_seed(3))]
    kwargs = dict(latent_shape=(2, 128, 5, 8), cfg=2.0, reference_latents=refs)
    plain = sample(model, _clip(), **kwargs)
    patched, session = _patched(model)
    out = sample(patched, _clip(), **kwargs)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    assert session.records[-1].saliency.maps.shape == (2, 3, 5, 8)  # the picture's tokens, not the reference's


# ---------------------------------------------------------------------------------------------
# maps == the independent reference
# ---------------------------------------------------------------------------------------------


NOISE_LEVEL = 0.37  # sigma = timestep here; bfloat16 rounds it (to 0.369140625), as it does the frequency table


def _encode(model, latent, **option_kw):
    from concept_attention.concept_patch.encode import encode_saliency

    clip = _clip()
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass under the sky"))
    option_kw.setdefault("layers", LAYERS)
    with ModelInputs(model.model.diffusion_model) as inputs:
        saliency = encode_saliency(model, _concepts(), latent, SaliencyOptions(**option_kw), conditioning=cond,
                                   noise_level=NOISE_LEVEL)
    return saliency, inputs


def _reference(model, inputs, space="output", softmax=True, deviation=None):
    assert inputs.get(3, "attention_mask") is None  # one unpadded prompt: no text mask
    timestep = inputs.get(1, "timestep")
    assert timestep.dtype == torch.bfloat16 and float(timestep[0]) != NOISE_LEVEL  # MageFlow.process_timestep
    concepts = _concepts()
    return ref.mage_flow_reference(model.model.diffusion_model, inputs.get(0, "x"), timestep, inputs.get(2, "context"),
                                   concepts.embeddings, LAYERS, space=space, softmax=softmax, deviation=deviation,
                                   concept_positions=concepts.positions)


def _latent():
    # odd height: Mage centres rows on -(h - h//2), Qwen-Image on -(h//2)
    return torch.randn(2, 128, 7, 10, generator=torch.Generator().manual_seed(11))


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
def test_mage_flow_maps_match_reference(space, softmax):
    model = _reference_model()
    saliency, inputs = _encode(model, _latent(), space=space, softmax=softmax)
    assert saliency.maps.shape == (2, 3, 7, 10)
    _assert_close(saliency.maps, _reference(model, inputs, space, softmax).maps, f"Mage-Flow {space}")


@pytest.mark.parametrize("deviation", ref.MAGE_FLOW_DEVIATIONS)
def test_mage_flow_comparison_catches_plausible_mistakes(deviation):
    """Concepts roped on Qwen-Image's text diagonal (Mage gives text id 0), modulated with the image stream's
    vectors, or updated without gates: each moves the maps well outside the tolerance.

    Compared on the raw output-space scores: this tiny random model's three concepts come out of its nearly
    uniform attention almost alike, so the softmax over them keeps every map within 2e-4 of 1/3, where two
    of these mistakes move it by only about 20 x the tolerance."""
    model = _reference_model()
    saliency, inputs = _encode(model, _latent(), softmax=False)
    wrong = _reference(model, inputs, softmax=False, deviation=deviation).maps
    atol = ATOL * max(1.0, float(wrong.abs().max()))  # _assert_close's absolute tolerance
    assert (saliency.maps.double() - wrong).abs().max() > 30 * atol


# ---------------------------------------------------------------------------------------------
# concept encoding: a concept's pooled rows are its own tokens
# ---------------------------------------------------------------------------------------------


def test_mage_flow_concepts_open_their_conditioning():
    """The own-token rows of every LLM encoder, Mage-Flow's included, are checked against the tokenizer's offsets
    in test_concept_encoding_llm.py; here: Mage's encoder cuts right after "<|im_start|>user\n", so a concept's own
    tokens open its conditioning."""
    concepts = encode_concepts(_clip(), CONCEPTS, pooling="first")
    assert concepts.positions[0].item() == 0.0
    assert concepts.text_space == "qwen3vl_4b" and concepts.context_dim == tiny_text_encoders.MAGE_FLOW_CONTEXT_DIM


def test_mage_flow_concepts_are_refused_by_qwen_image_and_qwen_concepts_by_mage():
    """Both read Qwen-family LLM states of the same width here, but from different encoders."""
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError

    qwen_concepts = encode_concepts(tiny_text_encoders.qwen_image_clip(), ["dog"])
    with pytest.raises(ConceptAttentionError, match="qwen25_7b"):
        install_concept_attention(tiny_models.mage_flow_model(depth=1), qwen_concepts, SaliencyOptions(layers=(0,)))
    with pytest.raises(ConceptAttentionError, match="qwen3vl_4b"):
        install_concept_attention(tiny_models.qwen_image_model(depth=1), _concepts(), SaliencyOptions(layers=(0,)))
