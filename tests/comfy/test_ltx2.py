"""LTX-2 / LTX-2.3 (audio-video, cross-attention) and LTX-Video 0.9.x: the video and the audio do not change with the
patch, both spaces (the paper's cross-attention baseline and the output-space extension) equal the independent fp64
reference (references/reference_ltx2.py) in encode and generation mode, plausible mistakes are caught (audio tokens or
the audio's text in the video maps, a missing key norm), spatio-temporal guidance's skipped self-attention call is
followed, a re-query equals a full run, and `value` space is refused by name.

Models are ComfyUI's own classes at tiny sizes (tiny_ltx2.py); concepts come from ComfyUI's LTX-2 Gemma 3 text
encoder (LTX-Video: its T5-XXL encoder) at a tiny size.
"""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.families.registry import detect_family
from concept_attention.concept_patch.generation import family_and_options, install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.partial_loads import check_shared_casts
from concept_attention_tests.comfy.references import reference_ltx2 as ref
from concept_attention_tests.comfy.tiny import tiny_ltx2

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog running on green grass under the sky"
RTOL, ATOL = 1e-5, 3e-6
GRID = (3, 5, 6)  # an odd latent frame count and an odd latent height


@functools.cache
def _clip(variant):
    return tiny_ltx2.ltxv_clip() if variant == "ltxv" else tiny_ltx2.ltx2_clip(variant)


@functools.cache
def _concepts(variant):
    from concept_attention.concept_patch.text.encoding import encode_concepts

    return encode_concepts(_clip(variant), CONCEPTS)


@functools.cache
def _reference_model(variant):
    return tiny_ltx2.ltxv_model(seed=41) if variant == "ltxv" else tiny_ltx2.ltx2_model(variant, seed=41)


_module_scope = cleared_after_module(_clip, _concepts, _reference_model, one_thread=True)


def _conditioning(variant, text):
    clip = _clip(variant)
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def _sample(model, variant, latent, steps=2, cfg=3.0, seed=3):
    import comfy.sample

    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", _conditioning(variant, PROMPT),
                               _conditioning(variant, ""), latent, seed=seed, disable_pbar=True)


@contextlib.contextmanager
def _block_inputs(dm, layers):
    """Per model call, what each selected block's video and audio text attention got ({layer: LayerInput}), and
    which rows were the conditional ones."""
    calls = []

    def block_hook(layer):
        def hook(module, args, kwargs):
            options = kwargs.get("transformer_options") or {}
            if layer == layers[0]:
                calls.append({"cond_or_uncond": list(options.get("cond_or_uncond", [0])), "layers": {}, "seen": {}})
            prompt = kwargs.get("v_prompt_timestep", kwargs.get("prompt_timestep"))
            calls[-1]["seen"][layer] = {"prompt": None if prompt is None else prompt.detach().clone()}
        return hook

    def attention_hook(layer, name, audio):
        def hook(module, args, kwargs):
            seen = calls[-1]["seen"][layer]
            mask = kwargs.get("mask")
            seen[name] = (args[0].detach().clone(), kwargs["context"].detach().clone(),
                          None if mask is None else mask.detach().clone())
            if "video" in seen and ("audio" in seen or not audio):
                x, context, mask = seen["video"]
                audio_x, audio_context, _ = seen.get("audio", (None, None, None))
                calls[-1]["layers"][layer] = ref.LayerInput(x, context, seen["prompt"], audio_x, audio_context, mask)
        return hook

    handles = []
    for i in layers:
        block = dm.transformer_blocks[i]
        audio = getattr(block, "audio_attn2", None)  # LTX-Video has none
        handles.append(block.register_forward_pre_hook(block_hook(i), with_kwargs=True))
        handles.append(block.attn2.register_forward_pre_hook(attention_hook(i, "video", audio), with_kwargs=True))
        if audio is not None:
            handles.append(audio.register_forward_pre_hook(attention_hook(i, "audio", audio), with_kwargs=True))
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
# the video and the audio do not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", tiny_ltx2.VARIANTS)
def test_video_and_audio_bit_identical(variant, dtype):
    """Batch 2, cfg > 1 (cond and uncond rows in one call), an odd latent frame count and height, both spaces."""
    model = tiny_ltx2.ltx2_model(variant, dtype=dtype)
    latent = tiny_ltx2.av_latent(batch=2, frames=GRID[0], height=GRID[1], width=GRID[2])
    plain = _sample(model, variant, latent).unbind()
    assert all(torch.isfinite(t).all() for t in plain)
    for space in ref.SPACES:
        patched, session = install_concept_attention(model, _concepts(variant),
                                                     SaliencyOptions(layers=(0, 2), space=space))
        out = _sample(patched, variant, latent).unbind()
        assert torch.equal(plain[0], out[0]) and torch.equal(plain[1], out[1]), space
        saliency = session.records[-1].saliency
        assert saliency.maps.shape == (2, 3, *GRID)
        assert torch.isfinite(saliency.maps).all()
        assert saliency.frames == 17  # the causal VAE: 8 (T - 1) + 1
        assert saliency.metadata["model_family"] == "LTX-2"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ltx_video_clip_bit_identical(dtype):
    """LTX-Video: batch 2, cfg > 1, an odd latent frame count and height, both spaces, T5 text with its padding mask."""
    model = tiny_ltx2.ltxv_model(dtype=dtype)
    plain = _sample(model, "ltxv", _empty_latent("ltxv"))
    assert torch.isfinite(plain).all()
    for space in ref.SPACES:
        patched, session = install_concept_attention(model, _concepts("ltxv"),
                                                     SaliencyOptions(layers=(0, 2), space=space))
        assert torch.equal(plain, _sample(patched, "ltxv", _empty_latent("ltxv"))), space
        saliency = session.records[-1].saliency
        assert saliency.maps.shape == (2, 3, *GRID) and torch.isfinite(saliency.maps).all()
        assert saliency.frames == 17 and saliency.metadata["model_family"] == "LTX-Video"


# ---------------------------------------------------------------------------------------------
# maps == the independent reference
# ---------------------------------------------------------------------------------------------


def _encode(model, variant, latent, layers=(0, 2), concepts=None, budget=0, **option_kw):
    dm = model.model.diffusion_model
    with _block_inputs(dm, layers) as calls:
        saliency = encode_saliency(model, concepts or _concepts(variant), latent,
                                   SaliencyOptions(layers=layers, **option_kw),
                                   conditioning=_conditioning(variant, PROMPT), cache_budget=budget)
    return saliency, calls


def _latent(batch=2, seed=11, variant="2"):
    if variant == "ltxv":  # a video latent [B, 128, T, h, w]
        return torch.randn(batch, tiny_ltx2.VIDEO_CHANNELS, *GRID, generator=torch.Generator().manual_seed(seed))
    return tiny_ltx2.av_latent(batch=batch, frames=GRID[0], height=GRID[1], width=GRID[2], seed=seed)


def _empty_latent(variant, batch=2):
    if variant == "ltxv":
        return torch.zeros(batch, tiny_ltx2.VIDEO_CHANNELS, *GRID)
    return tiny_ltx2.av_latent(batch=batch, frames=GRID[0], height=GRID[1], width=GRID[2])


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
@pytest.mark.parametrize("variant", [*tiny_ltx2.VARIANTS, "ltxv"])
def test_encode_maps_match_reference(variant, space, softmax):
    model = _reference_model(variant)
    saliency, calls = _encode(model, variant, _latent(variant=variant), space=space, softmax=softmax)
    assert len(calls) == 1
    assert saliency.maps.shape == (2, 3, *GRID)
    assert saliency.metadata["mode"] == "encode" and saliency.metadata["space"] == space
    assert saliency.metadata["space_method"].startswith(
        "the paper's cross-attention baseline" if space == "cross_attention" else "an extension beyond the paper")
    expected = ref.ltx2_reference(model.model.diffusion_model, calls[0]["layers"], _concepts(variant).embeddings,
                                  GRID, space, softmax).maps
    _assert_close(saliency.maps, expected, f"LTX-{variant} {space}")
    if softmax:  # maps that differ from token to token: the comparison is not one of uniform maps
        assert float(saliency.maps.std(dim=(2, 3, 4)).min()) > 5e-3


def _generation(model, variant, layers, space, **model_options):
    patched, session = install_concept_attention(model, _concepts(variant), SaliencyOptions(layers=layers, space=space))
    if model_options:  # a copy: the clone shares its transformer_options dict with the cached model
        patched.model_options["transformer_options"] = {**patched.model_options.get("transformer_options", {}),
                                                        **model_options}
    latent = _empty_latent(variant)
    with _block_inputs(model.model.diffusion_model, layers) as calls:
        _sample(patched, variant, latent, steps=3, cfg=2.5)
    assert len(calls) == 3
    expected = []
    for call in calls:
        chunks = call["cond_or_uncond"]
        assert len(chunks) == 2  # cond and uncond in one call
        start = chunks.index(0) * 2
        expected.append(ref.ltx2_reference(model.model.diffusion_model, call["layers"], _concepts(variant).embeddings,
                                           GRID, space, rows=slice(start, start + 2)).maps)
    return session.records[-1].saliency, sum(expected) / len(expected)


@pytest.mark.parametrize("space", ref.SPACES)
@pytest.mark.parametrize("variant", [*tiny_ltx2.VARIANTS, "ltxv"])
def test_generation_maps_match_reference(variant, space):
    """Maps of a sampling run (cfg 2.5: cond and uncond rows share each call; LTX-2.3's text modulation follows the
    timestep) are the mean over its model calls of the reference's maps of the conditional rows."""
    saliency, expected = _generation(_reference_model(variant), variant, (1, 2), space)
    _assert_close(saliency.maps, expected, f"LTX-{variant} generation")


def test_spatio_temporal_guidance_skipped_self_attention_is_followed():
    """STG makes a block's video self-attention a pass-through without an attention call: that block's text call is
    then its first, and the maps still equal the reference's."""
    model = _reference_model("2.3")
    saliency, expected = _generation(model, "2.3", (1, 2), "output", stg_self_attn_blocks=(1,))
    _assert_close(saliency.maps, expected, "STG")


@pytest.mark.parametrize(("variant", "space", "deviation"), [
    ("2", "cross_attention", "no_key_norm"), ("2.3", "output", "no_key_norm"), ("2", "output", "audio_tokens"),
    ("2.3", "output", "audio_tokens"), ("2", "cross_attention", "audio_text"), ("2.3", "output", "audio_text"),
    ("ltxv", "output", "no_key_norm"),
])
def test_comparison_catches_plausible_mistakes(variant, space, deviation):
    """Concept keys without the layer's key norm, the audio's tokens pooled with the video's, or the concepts embedded
    as the audio's text: each moves the maps well outside the tolerance."""
    model = _reference_model(variant)
    saliency, calls = _encode(model, variant, _latent(variant=variant), space=space)
    wrong = ref.ltx2_reference(model.model.diffusion_model, calls[0]["layers"], _concepts(variant).embeddings, GRID,
                               space, deviation=deviation).maps
    assert (saliency.maps.double() - wrong).abs().max() > 30 * ATOL


# ---------------------------------------------------------------------------------------------
# re-query, refusals, detection
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ref.SPACES)
def test_requery_equals_a_full_run(space):
    """An encode that records the video's queries and outputs, then other concepts over the recording: the maps of a
    full run of those concepts (LTX-2.3's text modulation included), and no model call."""
    from concept_attention.concept_patch.text.encoding import encode_concepts

    model = _reference_model("2.3")
    latent = _latent(batch=1, seed=len(space))  # a latent of its own per space: no recording of another test
    others = encode_concepts(_clip("2.3"), ["sky", "dog"])
    first, _ = _encode(model, "2.3", latent, layers=(1, 2), budget=2**26, space=space)
    assert first.metadata["requery"] is False
    again, calls = _encode(model, "2.3", latent, layers=(1, 2), concepts=others, budget=2**26, space=space)
    assert again.metadata["requery"] is True and not calls
    full, _ = _encode(model, "2.3", latent, layers=(1, 2), concepts=others, budget=0, space=space)
    assert full.metadata["requery"] is False
    torch.testing.assert_close(again.maps, full.maps, rtol=1e-6, atol=1e-7)


def test_value_space_and_table4_switches_are_refused_by_name():
    model = _reference_model("2")
    with pytest.raises(ConceptAttentionError, match="'value' space has no meaning for cross-attention blocks"):
        install_concept_attention(model, _concepts("2"), SaliencyOptions(layers=(0,), space="value"))
    with pytest.raises(ConceptAttentionError, match="'value' space"):
        family_and_options(model, "last 2", space="value")
    with pytest.raises(ConceptAttentionError, match="Table 4"):
        install_concept_attention(model, _concepts("2"), SaliencyOptions(layers=(0,), concept_self_attention=False))


def test_detection_claims_ltx2_and_ltx_video():
    assert detect_family(_reference_model("2.3").model.diffusion_model).name == "LTX-2"
    assert detect_family(_reference_model("ltxv").model.diffusion_model).name == "LTX-Video"


def test_concepts_of_another_encoder_or_projection_are_refused():
    """Concepts of another encoder (UMT5) are refused by text space, and LTX-2's single projection's concepts on an
    LTX-2.3 model by width."""
    from concept_attention.concept_patch.text.encoding import encode_concepts
    from concept_attention_tests.comfy.tiny import tiny_wan

    umt5 = encode_concepts(tiny_wan.wan_clip(), ["dog"])
    with pytest.raises(ConceptAttentionError, match="reads gemma3_12b states"):
        install_concept_attention(_reference_model("2"), umt5, SaliencyOptions(layers=(0,)))
    with pytest.raises(ConceptAttentionError, match="48-wide states.*reads 128-wide text states"):
        install_concept_attention(_reference_model("2.3"), _concepts("2"), SaliencyOptions(layers=(0,)))


@pytest.mark.parametrize("variant", tiny_ltx2.VARIANTS)
def test_concept_vectors_are_the_encoders_rows_of_the_concepts_own_tokens(variant):
    """LTX-2's encoder pads the text on the left to 1024 tokens, cuts the padding off its output and normalises its
    states over the whole text, so a token weight moves every row: the concept's rows are found as the output's rows
    after the start token (the tokenizer's own pieces say how many), pooled as the mean."""
    clip = _clip(variant)
    tokenizer = clip.tokenizer.gemma3_12b
    for name, vector in zip(CONCEPTS, _concepts(variant).embeddings):
        pieces = tokenizer.tokenizer(name)["input_ids"]
        assert pieces[0] == 2  # the start token, added to any text
        cond = clip.encode_from_tokens(clip.tokenize(name))
        assert cond.shape[1] == len(pieces)
        torch.testing.assert_close(vector, cond[0, 1:].float().mean(dim=0), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# the nodes on LTX-2
# ---------------------------------------------------------------------------------------------


def test_nodes_generation_encode_and_masks_on_an_av_latent():
    """Concept List -> Concept Attention (Generation) -> stock KSampler on the stock LTX-2 AV latent (Empty LTXV Latent
    Video + an audio latent, joined by LTXVConcatAVLatent) -> Concept Saliency from Sampling -> Saliency to Mask: the
    video and the audio are the unpatched model's, the maps are the video's per latent frame and the masks one per
    decoded frame (8 (T - 1) + 1); Concept Saliency encodes the sampled AV LATENT to maps of the same grid."""
    from comfy_extras.nodes_lt import EmptyLTXVLatentVideo, LTXVConcatAVLatent

    import nodes
    from concept_attention.nodes.concept_list import ConceptList
    from concept_attention.nodes.concept_saliency import ConceptSaliency
    from concept_attention.nodes.generation import ConceptAttentionPatch, SamplingSaliency
    from concept_attention.nodes.saliency_to_mask import SaliencyToMask

    model = tiny_ltx2.ltx2_model("2.3", depth=2, seed=3)
    clip = _clip("2.3")
    video = EmptyLTXVLatentVideo.execute(width=192, height=160, length=17).result[0]
    audio = {"samples": torch.zeros(1, tiny_ltx2.AUDIO_CHANNELS, 5, tiny_ltx2.AUDIO_BINS), "type": "audio"}
    latent = LTXVConcatAVLatent.execute(video_latent=video, audio_latent=audio).result[0]
    concepts = ConceptList.execute(clip=clip, concepts="dog, grass, sky", pooling="mean").result[0]
    positive = nodes.CLIPTextEncode().encode(clip, PROMPT)[0]
    negative = nodes.CLIPTextEncode().encode(clip, "")[0]
    patched = ConceptAttentionPatch.execute(model=model, concepts=concepts, layers="all", start_percent=0.0,
                                            end_percent=1.0, space="output", softmax=True).result[0]

    def generate(m):
        return nodes.common_ksampler(m, 7, 2, 3.0, "euler", "simple", positive, negative, latent)[0]

    sampled = generate(patched)
    for a, b in zip(sampled["samples"].unbind(), generate(model)["samples"].unbind()):
        assert torch.equal(a, b), "the patch must not change the video or the audio"
    saliency = SamplingSaliency.execute(model=patched, latent=sampled).result[0]
    assert tuple(saliency.maps.shape) == (1, 3, 3, 5, 6)
    assert saliency.frames == 17 and saliency.image_size == (160, 192)

    def mask(s, name="dog", method="relative_mean"):
        return SaliencyToMask.execute(saliency=s, concepts=name, method=method, threshold=0.5, grow=0, feather=0.0,
                                      invert=False).result[0]

    assert tuple(mask(saliency).shape) == (17, 160, 192)
    argmax = [mask(saliency, name, "argmax") for name in ("dog", "grass", "sky")]
    assert torch.equal(sum(argmax), torch.ones(17, 160, 192)), "argmax masks partition every frame"

    encoded = ConceptSaliency.execute(model=model, concepts=concepts, layers="all", noise_level=0.5, samples=1, seed=0,
                                      space="cross_attention", softmax=True, latent=sampled,
                                      conditioning=positive).result[0]
    assert tuple(encoded.maps.shape) == (1, 3, 3, 5, 6) and torch.isfinite(encoded.maps).all()
    assert encoded.metadata["space"] == "cross_attention"


# ---------------------------------------------------------------------------------------------
# a partially loaded model (ComfyUI's lowvram path)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_partially_loaded_model_casts_no_stored_weight_twice(dtype, partial_loads):
    """As tests/comfy/test_partial_loading.py for the other families: with half of an LTX-2.3 model offloaded, the
    concepts' keys (each selected layer's to_k and k_norm) reuse the casts the model makes and the concepts' embedding
    (the connector and caption_projection) is made once per session, not per model call, the video and audio are
    bit-identical and the maps are those of the fully loaded model."""
    model = tiny_ltx2.ltx2_model("2.3", dtype=dtype)
    patched, session = install_concept_attention(model, _concepts("2.3"), SaliencyOptions(layers=(0, 1, 2)))
    latent = tiny_ltx2.av_latent(batch=1, frames=GRID[0], height=GRID[1], width=GRID[2])

    def run(m):
        return torch.cat([t.flatten() for t in _sample(m, "2.3", latent, cfg=1.0).unbind()])

    check_shared_casts(partial_loads, model, patched, session, run)


@pytest.mark.parametrize(("guide_start", "tracked", "after"), [(40, 20, 0), (40, 10, 10), (0, 30, 0), (0, 20, 5)])
def test_the_text_call_follows_the_self_attention_calls_of_a_guide_mask(guide_start, tracked, after):
    """Keyframe guides of strength other than 1 give the video self-attention a guide mask, which ComfyUI's
    _attention_with_guide_mask splits into one attention call per query group: the text call is the one after all of
    them, counted here by running ComfyUI's function with a counting attention override."""
    from comfy.ldm.lightricks.model import GuideAttentionMask, _attention_with_guide_mask

    from concept_attention.concept_patch.families.ltx2 import LTX2Blocks

    tokens = guide_start + tracked + after
    mask = GuideAttentionMask(tokens, guide_start, tracked, torch.full((tracked,), 0.5))
    calls = []

    def counting(func, *args, **kwargs):
        calls.append(args[0].shape[1])
        return func(*args, **kwargs)

    q = torch.randn(1, tokens, 64)
    _attention_with_guide_mask(q, q, q, 2, mask, None, {"optimized_attention_override": counting})
    assert sum(calls) == tokens
    video = torch.zeros(1, tokens, 64)
    for img in ((video, torch.zeros(1, 0, 64)), video):  # LTX-2's (video, audio) and LTX-Video's video
        args = {"img": img, "self_attention_mask": mask, "transformer_options": {}}
        assert LTX2Blocks("transformer_blocks").text_call(None, args) == len(calls)
        assert LTX2Blocks("transformer_blocks").text_call(None, {**args, "self_attention_mask": None}) == 1
        stg = {**args, "transformer_options": {"stg_skip_self_attn": True}}
        assert LTX2Blocks("transformer_blocks").text_call(None, stg) == 0


class _GuideVAE:
    """What LTXVAddGuide reads of a VAE: its scale factors, and an encode (here a seeded random latent of the frames
    the LTX VAE gives the pictures)."""

    downscale_index_formula = (8, 32, 32)

    def encode(self, pixels):
        frames = (pixels.shape[0] - 1) // 8 + 1
        shape = (1, tiny_ltx2.VIDEO_CHANNELS, frames, pixels.shape[1] // 32, pixels.shape[2] // 32)
        return torch.randn(shape, generator=torch.Generator().manual_seed(13))


@pytest.mark.parametrize("space", ref.SPACES)
def test_keyframe_guide_of_partial_strength_bit_identical_and_maps_match_reference(space):
    """LTXVAddGuide (strength 0.5, a first-frame guide) on the video latent, joined with the audio by
    LTXVConcatAVLatent: the guide's frame is appended to the clip's latent and the video self-attention runs split by
    the guide mask (two attention calls). The video and audio are the unpatched model's, and the maps (one frame more:
    the guide's) equal the reference's over the text calls the model made."""
    from comfy_extras.nodes_lt import EmptyLTXVLatentVideo, LTXVAddGuide, LTXVConcatAVLatent

    import nodes

    model = _reference_model("2.3")
    clip = _clip("2.3")
    video = EmptyLTXVLatentVideo.execute(width=GRID[2] * 32, height=GRID[1] * 32, length=8 * (GRID[0] - 1) + 1).result[0]
    positive = nodes.CLIPTextEncode().encode(clip, PROMPT)[0]
    negative = nodes.CLIPTextEncode().encode(clip, "")[0]
    image = torch.rand(1, GRID[1] * 32, GRID[2] * 32, 3, generator=torch.Generator().manual_seed(4))
    positive, negative, guided = LTXVAddGuide.execute(positive=positive, negative=negative, vae=_GuideVAE(),
                                                      latent=video, image=image, frame_idx=0, strength=0.5).result
    audio = {"samples": torch.zeros(1, tiny_ltx2.AUDIO_CHANNELS, 5, tiny_ltx2.AUDIO_BINS), "type": "audio"}
    latent = LTXVConcatAVLatent.execute(video_latent=guided, audio_latent=audio).result[0]
    grid = (GRID[0] + 1, *GRID[1:])  # the guide's latent frame after the clip's

    def generate(m):
        return nodes.common_ksampler(m, 7, 2, 2.5, "euler", "simple", positive, negative, latent)[0]["samples"]

    patched, session = install_concept_attention(model, _concepts("2.3"), SaliencyOptions(layers=(1, 2), space=space))
    dm = model.model.diffusion_model
    with _block_inputs(dm, (1, 2)) as calls:
        out = generate(patched)
    for a, b in zip(out.unbind(), generate(model).unbind()):
        assert torch.equal(a, b), "the patch must not change the video or the audio"
    assert len(calls) == 2
    expected = []
    for call in calls:
        start = call["cond_or_uncond"].index(0)
        expected.append(ref.ltx2_reference(dm, call["layers"], _concepts("2.3").embeddings, grid, space,
                                           rows=slice(start, start + 1)).maps)
    saliency = session.records[-1].saliency
    _assert_close(saliency.maps, sum(expected) / len(expected), f"guided {space}")
