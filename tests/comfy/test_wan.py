"""Wan 2.1 / 2.2 (T2V, I2V, TI2V 5B), the first cross-attention family (issue 23): the clip does not change with the
patch, both spaces (the paper's cross-attention baseline and the output-space extension) equal the independent fp64
reference (references/reference_wan.py) in encode and generation mode, plausible mistakes are caught, a re-query
equals a full run, `value` space is refused by name, and the nodes run on Wan.

Models are ComfyUI's own classes at tiny sizes (tiny_wan.py); concepts come from ComfyUI's Wan UMT5-XXL text
encoder at a tiny size.
"""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError, UnsupportedModelError
from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.families.registry import detect_family
from concept_attention.concept_patch.generation import family_and_options, install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention_tests.comfy.module_caches import cached_clip_and_concepts, cleared_after_module
from concept_attention_tests.comfy.partial_loads import check_shared_casts
from concept_attention_tests.comfy.references import reference_wan as ref
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_wan

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog running on green grass under the sky"
RTOL, ATOL = 1e-5, 3e-6

_clip, _concepts = cached_clip_and_concepts(tiny_wan.wan_clip, CONCEPTS)


@functools.cache
def _reference_model(variant):
    return tiny_wan.wan_model(variant, seed=41)


_module_scope = cleared_after_module(_clip, _concepts, _reference_model, one_thread=True)


def _channels(variant):
    return 48 if variant == "ti2v" else 16


def _condition(variant, shape, seed=5):
    """What Wan's image-to-video nodes put on the conditioning: the start image's latent (as many frames as the clip)
    and the CLIP-vision output."""
    if variant != "i2v":
        return {}
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return {"concat_latent_image": latent, "clip_vision_output": tiny_wan.ClipVisionOutput(seed=seed)}


def _positive(variant, shape):
    clip = _clip()
    return [[c, {**d, **_condition(variant, shape)}] for c, d in clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))]


@contextlib.contextmanager
def _cross_attention_inputs(dm, layers):
    """Per model call, the inputs each selected layer's cross-attention module got ({layer: LayerInput}), and which
    rows were the conditional ones."""
    calls = []

    def hook_for(layer):
        def hook(module, args, kwargs):
            options = kwargs.get("transformer_options") or {}
            if layer == layers[0]:
                calls.append({"cond_or_uncond": list(options.get("cond_or_uncond", [0])), "layers": {}})
            context = args[1] if len(args) > 1 else kwargs["context"]
            calls[-1]["layers"][layer] = ref.LayerInput(args[0].detach().clone(), context.detach().clone(),
                                                        kwargs.get("context_img_len"))
        return hook

    handles = [dm.blocks[i].cross_attn.register_forward_pre_hook(hook_for(i), with_kwargs=True) for i in layers]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _assert_close(product, expected, what):
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    assert tuple(product.shape) == tuple(expected.shape)
    assert (diff <= atol + RTOL * expected.abs()).all(), f"{what}: max |product - reference| = {diff.max():.3e}"


# ---------------------------------------------------------------------------------------------
# the clip does not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", tiny_wan.VARIANTS)
def test_clip_bit_identical(variant, dtype):
    """Batch 2, cfg > 1 (cond and uncond rows in one call), an odd latent frame count, a non-square grid."""
    model = tiny_wan.wan_model(variant, dtype=dtype)
    shape = (2, _channels(variant), 3, 6, 8)
    extra = _condition(variant, shape)
    plain = sample(model, _clip(), latent_shape=shape, cfg=3.0, steps=2, prompt=PROMPT, **extra)
    for space in ref.SPACES:
        patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 2), space=space))
        out = sample(patched, _clip(), latent_shape=shape, cfg=3.0, steps=2, prompt=PROMPT, **extra)
        assert torch.isfinite(plain).all()
        assert torch.equal(plain, out), space
        saliency = session.records[-1].saliency
        assert saliency.maps.shape == (2, 3, 3, 3, 4)
        assert torch.isfinite(saliency.maps).all()
        assert saliency.frames == 9  # the causal VAE: 4 (T - 1) + 1
        assert saliency.metadata["model_family"] == ("Wan VACE" if variant == "vace" else "Wan 2.1/2.2")


# ---------------------------------------------------------------------------------------------
# maps == the independent reference
# ---------------------------------------------------------------------------------------------


def _encode(model, variant, latent, layers=(0, 2), **option_kw):
    dm = model.model.diffusion_model
    with _cross_attention_inputs(dm, layers) as calls:
        saliency = encode_saliency(model, _concepts(), latent, SaliencyOptions(layers=layers, **option_kw),
                                   conditioning=_positive(variant, latent.shape))
    assert len(calls) == 1
    return saliency, calls[0]["layers"]


def _latent(variant, frames=3, batch=2, seed=11):
    # odd height: padded to whole patches (not for VACE, whose control video ComfyUI does not pad: such a latent
    # fails in ComfyUI's own VACE blocks, with or without the patch)
    height = 6 if variant == "vace" else 5
    return torch.randn(batch, _channels(variant), frames, height, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
@pytest.mark.parametrize("variant", tiny_wan.VARIANTS)
def test_encode_maps_match_reference(variant, space, softmax):
    model = _reference_model(variant)
    saliency, calls = _encode(model, variant, _latent(variant), space=space, softmax=softmax)
    assert saliency.maps.shape == (2, 3, 3, 3, 4)
    assert saliency.metadata["mode"] == "encode" and saliency.metadata["space"] == space
    assert saliency.metadata["space_method"].startswith(
        "the paper's cross-attention baseline" if space == "cross_attention" else "an extension beyond the paper")
    expected = ref.wan_reference(model.model.diffusion_model, calls, _concepts().embeddings, (3, 3, 4), space,
                                 softmax).maps
    _assert_close(saliency.maps, expected, f"{variant} {space}")
    if softmax:  # maps that differ from token to token: the comparison is not one of uniform maps
        assert float(saliency.maps.std(dim=(2, 3, 4)).min()) > 5e-3


@pytest.mark.parametrize("variant", ["t2v", "i2v"])
@pytest.mark.parametrize("space", ref.SPACES)
def test_generation_maps_match_reference(variant, space):
    """Maps of a sampling run (cfg 2.5: cond and uncond rows share each call) are the mean over its model calls of
    the reference's maps of the conditional rows."""
    model = _reference_model(variant)
    shape = (2, 16, 3, 4, 6)
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(1, 2), space=space))
    with _cross_attention_inputs(model.model.diffusion_model, (1, 2)) as calls:
        sample(patched, _clip(), latent_shape=shape, cfg=2.5, steps=3, prompt=PROMPT, **_condition(variant, shape))
    assert len(calls) == 3
    expected = []
    for call in calls:
        chunks = call["cond_or_uncond"]
        assert len(chunks) == 2  # cond and uncond in one call
        start = chunks.index(0) * 2
        expected.append(ref.wan_reference(model.model.diffusion_model, call["layers"], _concepts().embeddings,
                                          (3, 2, 3), space, rows=slice(start, start + 2)).maps)
    _assert_close(session.records[-1].saliency.maps, sum(expected) / len(expected), f"{variant} generation")


@pytest.mark.parametrize(("variant", "space", "deviation"), [
    ("i2v", "cross_attention", "clip_keys_as_concepts"), ("i2v", "output", "clip_keys_as_concepts"),
    ("i2v", "output", "clip_output_in_o"), ("t2v", "cross_attention", "no_key_norm"), ("t2v", "output", "no_key_norm"),
])
def test_comparison_catches_plausible_mistakes(variant, space, deviation):
    """CLIP-vision image keys mixed into the concepts' keys, the CLIP-vision output in o_i, or concept keys without
    the layer's key norm: each moves the maps well outside the tolerance."""
    model = _reference_model(variant)
    saliency, calls = _encode(model, variant, _latent(variant), space=space)
    wrong = ref.wan_reference(model.model.diffusion_model, calls, _concepts().embeddings, (3, 3, 4), space,
                              deviation=deviation).maps
    assert (saliency.maps.double() - wrong).abs().max() > 30 * ATOL


# ---------------------------------------------------------------------------------------------
# re-query, refusals, detection
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ref.SPACES)
def test_requery_equals_a_full_run(space):
    """An encode that records the picture's queries and outputs, then other concepts over the recording: the maps of
    a full run of those concepts, and no model call."""
    from concept_attention.concept_patch.text.encoding import encode_concepts

    model = _reference_model("i2v")
    latent = _latent("i2v", batch=1)
    positive = _positive("i2v", latent.shape)
    options = SaliencyOptions(layers=(1, 2), space=space)
    others = encode_concepts(_clip(), ["sky", "dog"])
    first = encode_saliency(model, _concepts(), latent, options, conditioning=positive, cache_budget=2**26)
    assert first.metadata["requery"] is False
    dm = model.model.diffusion_model
    with _cross_attention_inputs(dm, (1, 2)) as calls:
        again = encode_saliency(model, others, latent, options, conditioning=positive, cache_budget=2**26)
    assert again.metadata["requery"] is True and not calls
    full = encode_saliency(model, others, latent, options, conditioning=positive, cache_budget=0)
    assert full.metadata["requery"] is False
    torch.testing.assert_close(again.maps, full.maps, rtol=1e-6, atol=1e-7)


def test_value_space_and_table4_switches_are_refused_by_name():
    model = _reference_model("t2v")
    with pytest.raises(ConceptAttentionError, match="'value' space has no meaning for cross-attention blocks"):
        install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0,), space="value"))
    with pytest.raises(ConceptAttentionError, match="'value' space"):
        family_and_options(model, "last 2", space="value")
    with pytest.raises(ConceptAttentionError, match="Table 4"):
        install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0,), concept_self_attention=False))


def test_detection_claims_wan_and_vace_and_refuses_other_variants_by_name():
    assert detect_family(_reference_model("ti2v").model.diffusion_model).name == "Wan 2.1/2.2"
    assert detect_family(_reference_model("vace").model.diffusion_model).name == "Wan VACE"
    camera = tiny_wan.camera_model().model.diffusion_model
    with pytest.raises(UnsupportedModelError, match="CameraWanModel, a Wan variant.*camera.*Supported: Flux.1.*Wan VACE"):
        detect_family(camera)


def test_concepts_of_another_encoder_are_refused():
    from concept_attention.concept_patch.text.encoding import encode_concepts
    from concept_attention_tests.comfy.tiny import tiny_cogvideox

    t5 = encode_concepts(tiny_cogvideox.cogvideox_clip(), ["dog"])
    with pytest.raises(ConceptAttentionError, match="reads umt5xxl states"):
        install_concept_attention(_reference_model("t2v"), t5, SaliencyOptions(layers=(0,)))


# ---------------------------------------------------------------------------------------------
# the nodes on Wan
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ref.SPACES)
def test_nodes_encode_and_generation_to_masks(space, comfyui_path):
    """Concept List -> Concept Saliency (encode a clip latent) and Concept Attention (Generation) -> stock KSampler ->
    Concept Saliency from Sampling -> Saliency to Mask: one mask per frame the causal VAE decodes (4 (T - 1) + 1),
    the clip sampled exactly as by the unpatched model; 'value' space is refused by the nodes with the pack's error."""
    import nodes
    from concept_attention.nodes.concept_list import ConceptList
    from concept_attention.nodes.concept_saliency import ConceptSaliency
    from concept_attention.nodes.generation import ConceptAttentionPatch, SamplingSaliency
    from concept_attention.nodes.saliency_to_mask import SaliencyToMask

    model = tiny_wan.wan_model("t2v", depth=2, seed=3)
    concepts = ConceptList.execute(clip=_clip(), concepts="dog, grass, sky", pooling="mean").result[0]
    latent = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(2))

    def mask(saliency, **kw):
        return SaliencyToMask.execute(saliency=saliency, concepts=kw.get("concepts", "dog"),
                                      method=kw.get("method", "relative_mean"), threshold=0.5, grow=0, feather=0.0,
                                      invert=False).result[0]

    saliency, preview = ConceptSaliency.execute(
        model=model, concepts=concepts, layers="last 2", noise_level=0.5, samples=1, seed=0, space=space, softmax=True,
        latent={"samples": latent}).result[:2]
    assert tuple(saliency.maps.shape) == (1, 3, 3, 2, 3) and saliency.frames == 9
    assert preview.shape[0] == 9
    assert tuple(mask(saliency).shape) == (9, 32, 48)
    argmax = [mask(saliency, concepts=name, method="argmax") for name in ("dog", "grass", "sky")]
    assert torch.equal(sum(argmax), torch.ones(9, 32, 48)), "argmax masks partition every frame"

    clip = _clip()
    positive = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    empty = {"samples": torch.zeros(1, 16, 3, 4, 6)}
    patched = ConceptAttentionPatch.execute(model=model, concepts=concepts, layers="all", start_percent=0.0,
                                            end_percent=1.0, space=space, softmax=True).result[0]

    def generate(m):
        return nodes.common_ksampler(m, 7, 2, 3.0, "euler", "simple", positive, negative, empty)[0]

    sampled = generate(patched)
    assert torch.equal(sampled["samples"], generate(model)["samples"]), "the patch must not change the clip"
    saliency = SamplingSaliency.execute(model=patched, latent=sampled).result[0]
    assert tuple(saliency.maps.shape) == (1, 3, 3, 2, 3) and saliency.frames == 9
    assert tuple(mask(saliency).shape) == (9, 32, 48)

    with pytest.raises(ConceptAttentionError, match="'value' space has no meaning for cross-attention blocks"):
        ConceptAttentionPatch.execute(model=model, concepts=concepts, layers="all", start_percent=0.0, end_percent=1.0,
                                      space="value", softmax=True)


# ---------------------------------------------------------------------------------------------
# a partially loaded model (ComfyUI's lowvram path)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_partially_loaded_model_casts_no_stored_weight_twice(dtype, partial_loads):
    """As tests/comfy/test_partial_loading.py for the other families: with half the model offloaded, the concept keys
    (text_embedding, each selected layer's k and norm_k) reuse the casts the model made, the clip is bit-identical and
    the maps are those of the fully loaded model."""
    model = tiny_wan.wan_model("i2v", dtype=dtype)
    shape = (1, 16, 3, 6, 8)
    extra = _condition("i2v", shape)
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 1, 2)))

    check_shared_casts(partial_loads, model, patched, session,
                       lambda m: sample(m, _clip(), latent_shape=shape, steps=2, cfg=1.0, prompt=PROMPT, **extra))


# ---------------------------------------------------------------------------------------------
# Wan 2.2 14B's two experts: one SALIENCY over both samplers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ref.SPACES)
def test_two_experts_give_one_saliency_equal_to_the_reference_over_both(space):
    """As the stock Wan 2.2 14B templates sample: a high-noise expert's KSamplerAdvanced (steps 0-2 of 4, leftover
    noise returned), then a low-noise expert's from that latent (steps 2-4, no noise added), each expert patched by
    Concept Attention (Generation) from one Concept List. Concept Saliency from Sampling with both models gives one
    SALIENCY: the mean over all four model calls of the reference's maps of the conditional rows, of either expert.
    The clip is the unpatched chain's, bit for bit."""
    import nodes
    from concept_attention.nodes.concept_list import ConceptList
    from concept_attention.nodes.generation import ConceptAttentionPatch, SamplingSaliency

    high, low = tiny_wan.wan_model("t2v", seed=51), tiny_wan.wan_model("t2v", seed=52)
    concepts = ConceptList.execute(clip=_clip(), concepts=", ".join(CONCEPTS), pooling="mean").result[0]
    clip = _clip()
    positive = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    empty = {"samples": torch.zeros(1, 16, 3, 4, 6)}

    def patch(model):
        return ConceptAttentionPatch.execute(model=model, concepts=concepts, layers="1-2", start_percent=0.0,
                                             end_percent=1.0, space=space, softmax=True).result[0]

    def chain(first, second):
        begun = nodes.common_ksampler(first, 5, 4, 3.0, "euler", "simple", positive, negative, empty, start_step=0,
                                      last_step=2, force_full_denoise=False)[0]
        return nodes.common_ksampler(second, 5, 4, 3.0, "euler", "simple", positive, negative, begun,
                                     disable_noise=True, start_step=2, last_step=4, force_full_denoise=True)[0]

    high_patched, low_patched = patch(high), patch(low)
    with _cross_attention_inputs(high.model.diffusion_model, (1, 2)) as high_calls, \
            _cross_attention_inputs(low.model.diffusion_model, (1, 2)) as low_calls:
        final = chain(high_patched, low_patched)
    assert torch.equal(final["samples"], chain(high, low)["samples"]), "the patches must not change the clip"
    saliency = SamplingSaliency.execute(model=low_patched, latent=final, model_2=high_patched).result[0]
    assert saliency.metadata["experts"] == 2 and saliency.metadata["expert_model_calls_used"] == [2, 2]

    expected = []
    for model, calls in ((high, high_calls), (low, low_calls)):
        assert len(calls) == 2
        for call in calls:
            start = call["cond_or_uncond"].index(0)
            expected.append(ref.wan_reference(model.model.diffusion_model, call["layers"], concepts.embeddings,
                                              (3, 2, 3), space, rows=slice(start, start + 1)).maps)
    _assert_close(saliency.maps, sum(expected) / len(expected), f"two experts {space}")
    # The low-noise expert alone is not that: the first expert's steps are in the maps.
    alone = SamplingSaliency.execute(model=low_patched, latent=final).result[0]
    assert (alone.maps - saliency.maps).abs().max() > 1e-4

    with pytest.raises(ConceptAttentionError, match="no sampling run of model_2 produced the latent"):
        SamplingSaliency.execute(model=low_patched, latent=final, model_2=patch(high))
    other = ConceptList.execute(clip=_clip(), concepts="dog, sky", pooling="mean").result[0]
    mismatched = ConceptAttentionPatch.execute(model=high, concepts=other, layers="1-2", start_percent=0.0,
                                               end_percent=1.0, space=space, softmax=True).result[0]
    final = chain(mismatched, low_patched)
    with pytest.raises(ConceptAttentionError, match="patched with different concepts"):
        SamplingSaliency.execute(model=low_patched, latent=final, model_2=mismatched)
