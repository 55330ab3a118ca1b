"""CogVideoX (2B, 5B, 5B-I2V, 1.5, 1.5-I2V, Fun inpaint): the video does not change with the patch, the maps equal
the independent fp64 reference (reference_cogvideox.py) in encode and generation mode, the maps' time axis
matches the token grid and their frame count what ComfyUI's CogVideoX VAE decodes, and encode mode noises a
video latent through the model's own (v-prediction DDPM) sampling.

Models are ComfyUI's own classes at tiny sizes (tiny_cogvideox.py); concepts come from ComfyUI's CogVideoX T5
text encoder with a tiny T5.
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.model_inputs import Calls
from concept_attention_tests.comfy.module_caches import cached_clip_and_concepts, cleared_after_module
from concept_attention_tests.comfy.references import reference_concept_attention as ref
from concept_attention_tests.comfy.references.reference_cogvideox import COGVIDEOX_DEVIATIONS, cogvideox_reference
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_cogvideox, tiny_models

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog running on green grass under the sky"
RTOL, ATOL = 1e-5, 3e-6
CONDITIONED = ("5b-i2v", "1.5-i2v", "fun-inpaint")  # take a condition latent as extra channels
REFERENCE_VARIANTS = ("2b", "5b", "5b-i2v", "1.5", "1.5-i2v")


_clip, _concepts = cached_clip_and_concepts(tiny_cogvideox.cogvideox_clip, CONCEPTS)


@functools.cache
def _reference_model(variant):
    return tiny_cogvideox.cogvideox_model(variant, seed=41)


_module_scope = cleared_after_module(_clip, _concepts, _reference_model)


def _condition(shape, seed=5):
    """What an image-to-video / inpaint graph puts on the conditioning: a latent with the video's frames."""
    return {"concat_latent_image": torch.randn(shape, generator=torch.Generator().manual_seed(seed))}


def _token_frames(variant, latent_frames):
    return -(-latent_frames // 2) if variant.startswith(("1.5", "fun")) else latent_frames


def _decoded_frames(latent_frames):
    return 4 * latent_frames - (3 if latent_frames % 2 else 0) if latent_frames > 1 else 1


# ---------------------------------------------------------------------------------------------
# the video does not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", tiny_cogvideox.VARIANTS)
def test_video_bit_identical(variant, dtype):
    """Batch 2, cfg > 1 (cond and uncond rows in one call), an odd latent frame count (5: 1.5 pads it to 6)."""
    model = tiny_cogvideox.cogvideox_model(variant, dtype=dtype)
    frames = 5 if variant.startswith(("1.5", "fun")) else 3
    shape = (2, 16, frames, 6, 8)
    extra = _condition(shape) if variant in CONDITIONED else {}
    plain = sample(model, _clip(), latent_shape=shape, cfg=3.0, steps=2, prompt=PROMPT, **extra)
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 1, 2)))
    out = sample(patched, _clip(), latent_shape=shape, cfg=3.0, steps=2, prompt=PROMPT, **extra)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    saliency = session.records[-1].saliency
    assert saliency.maps.shape == (2, 3, _token_frames(variant, frames), 3, 4)
    assert saliency.frames == _decoded_frames(frames)
    assert saliency.metadata["model_family"] == "CogVideoX"


# ---------------------------------------------------------------------------------------------
# maps == the independent reference
# ---------------------------------------------------------------------------------------------


def _recorded_calls(dm):
    return Calls(dm, names=("x", "timestep", "context", "ofs"))


def _reference(model, call, rows=slice(None), layers=(0, 2), **kw):
    ofs = call.get("ofs")
    return cogvideox_reference(model.model.diffusion_model, call["x"][rows], call["timestep"][rows],
                               call["context"][rows], _concepts().embeddings, layers,
                               ofs=None if ofs is None else ofs[rows], **kw)


def _encode(model, latent, cond=None, layers=(0, 2), **option_kw):
    clip = _clip()
    cond = cond or clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    with _recorded_calls(model.model.diffusion_model) as calls:
        saliency = encode_saliency(model, _concepts(), latent, SaliencyOptions(layers=layers, **option_kw),
                                   conditioning=cond)
    assert len(calls.calls) == 1
    return saliency, calls.calls[0]


def _assert_close(product, expected, what):
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    assert tuple(product.shape) == tuple(expected.shape)
    assert (diff <= atol + RTOL * expected.abs()).all(), f"{what}: max |product - reference| = {diff.max():.3e}"


def _encode_inputs(variant, frames=3):
    g = torch.Generator().manual_seed(11)
    latent = torch.randn(2, 16, frames, 5, 8, generator=g)  # odd height: padded to whole patches
    cond = None
    if variant in CONDITIONED:
        clip = _clip()
        cond = [[c, {**d, **_condition(latent.shape, seed=12)}]
                for c, d in clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))]
    return latent, cond


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_encode_maps_match_reference(variant, space, softmax):
    model = _reference_model(variant)
    latent, cond = _encode_inputs(variant)
    saliency, call = _encode(model, latent, cond, space=space, softmax=softmax)
    assert saliency.maps.shape == (2, 3, _token_frames(variant, 3), 3, 4)
    assert saliency.frames == 9 and saliency.metadata["mode"] == "encode"
    _assert_close(saliency.maps, _reference(model, call, space=space, softmax=softmax).maps, f"{variant} {space}")


@pytest.mark.parametrize("variant", ["5b", "1.5-i2v"])
def test_generation_maps_match_reference(variant):
    """Maps of a sampling run (cfg 2.5: cond and uncond rows share each call) are the mean over its model calls of
    the reference's maps of the conditional rows."""
    model = _reference_model(variant)
    shape = (2, 16, 3, 4, 6)
    extra = _condition(shape) if variant in CONDITIONED else {}
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(1, 2)))
    with _recorded_calls(model.model.diffusion_model) as calls:
        sample(patched, _clip(), latent_shape=shape, cfg=2.5, steps=3, prompt=PROMPT, **extra)
    assert len(calls.calls) == 3
    expected = []
    for call in calls.calls:
        chunks = call["transformer_options"]["cond_or_uncond"]
        assert len(chunks) == 2  # cond and uncond in one call
        start = chunks.index(0) * 2
        expected.append(_reference(model, call, rows=slice(start, start + 2), layers=(1, 2)).maps)
    maps = session.records[-1].saliency.maps
    _assert_close(maps, sum(expected) / len(expected), f"{variant} generation")


@pytest.mark.parametrize("deviation", COGVIDEOX_DEVIATIONS)
def test_comparison_catches_plausible_mistakes(deviation):
    """The video share of the modulation, ungated updates, or concepts reading the keys before RoPE: each moves
    the maps well outside the tolerance."""
    model = _reference_model("5b")
    latent, cond = _encode_inputs("5b")
    saliency, call = _encode(model, latent, cond)
    wrong = _reference(model, call, deviation=deviation).maps
    assert (saliency.maps.double() - wrong).abs().max() > 30 * ATOL


# ---------------------------------------------------------------------------------------------
# time axis and frame count
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("latent_frames", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("variant", ["5b", "1.5"])
def test_frames_equal_the_decoded_frame_count(variant, latent_frames):
    """The maps have one frame per token frame (1.5 pairs latent frames, padding an odd count), and the SALIENCY's
    frame count is what ComfyUI's CogVideoX VAE decodes that latent to (4T - 3 for odd T, 4T for even T)."""
    model = _reference_model(variant)
    latent = torch.randn(1, 16, latent_frames, 4, 4, generator=torch.Generator().manual_seed(3))
    saliency, _ = _encode(model, latent, layers=(0,))
    assert saliency.maps.shape == (1, 3, _token_frames(variant, latent_frames), 2, 2)
    assert saliency.is_video and saliency.token_frames == _token_frames(variant, latent_frames)
    vae = tiny_cogvideox.cogvideox_vae_decoder()
    with torch.no_grad():
        decoded = vae.decode(latent[:, :, :, :2, :2])
    assert saliency.frames == decoded.shape[2]


# ---------------------------------------------------------------------------------------------
# encode mode noises through the model's own sampling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_level", [0.3, 0.5, 1.0])
def test_encode_noises_to_the_timestep_of_the_noise_level(noise_level):
    """CogVideoX samples v-prediction DDPM: noise level t is timestep t of its 1000 (0.5: ~500, 1.0: the last), and
    the latent the network gets is ComfyUI's own noise scaling of it at that sigma."""
    import comfy.sample

    model = _reference_model("5b")
    latent = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    clip = _clip()
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    with _recorded_calls(model.model.diffusion_model) as calls:
        encode_saliency(model, _concepts(), latent, SaliencyOptions(layers=(0,)), conditioning=cond,
                        noise_level=noise_level, seed=9)
    call = calls.calls[0]
    assert float(call["timestep"][0]) == pytest.approx(999 * noise_level, abs=0.5)  # ComfyUI takes the nearest step
    ms = model.get_model_object("model_sampling")
    sigma = ms.sigma(torch.tensor(999 * noise_level))
    noise = comfy.sample.prepare_noise(latent, 9)
    scale = (1 + sigma**2).sqrt() if noise_level == 1.0 else sigma  # the sampler's max_denoise at sigma_max
    x0 = model.model.process_latent_in(latent)  # the latent format's scale, as every sampler applies it
    torch.testing.assert_close(call["x"].float(), x0 + scale * noise, rtol=1e-5, atol=1e-5 * float(scale))


def test_flow_models_keep_sigma_equal_to_the_noise_level(flux_clip):
    """Flux (CONST): the latent is still z = (1 - t) x0 + t eps at sigma t, as before video support."""
    import comfy.sample

    model = tiny_models.flux_model(seed=5)
    latent = torch.randn(1, 16, 6, 8, generator=torch.Generator().manual_seed(6))
    with _recorded_calls(model.model.diffusion_model) as calls:
        encode_saliency(model, encode_concepts(flux_clip, CONCEPTS), latent, SaliencyOptions(layers=(0,)),
                        noise_level=0.37, seed=2)
    noise = comfy.sample.prepare_noise(latent, 2)
    assert float(calls.calls[0]["timestep"][0]) == pytest.approx(0.37)
    x0 = model.model.process_latent_in(latent)
    torch.testing.assert_close(calls.calls[0]["x"], 0.63 * x0 + 0.37 * noise)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_concepts_from_another_text_encoder_are_refused(sd3_clip):
    model = _reference_model("5b")
    with pytest.raises(ConceptAttentionError, match="t5xxl states"):
        install_concept_attention(model, encode_concepts(sd3_clip, CONCEPTS), SaliencyOptions(layers=(0,)))


def test_a_clip_for_a_picture_model_is_refused(flux_clip):
    model = tiny_models.flux_model(seed=7)
    latent = torch.randn(1, 16, 3, 6, 8)
    with pytest.raises(ConceptAttentionError, match=r"3 frames .* picture model"):
        encode_saliency(model, encode_concepts(flux_clip, CONCEPTS), latent, SaliencyOptions(layers=(0,)))
