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

from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.model_inputs import Calls
from concept_attention_tests.comfy.module_caches import cached_clip_and_concepts, cleared_after_module
from concept_attention_tests.comfy.references import reference_concept_attention as ref
from concept_attention_tests.comfy.references.reference_minimax import MINIMAX_DEVIATIONS, minimax_reference
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


# ---------------------------------------------------------------------------------------------
# maps == the independent reference
# ---------------------------------------------------------------------------------------------


def _recorded_calls(dm):
    return Calls(dm, extra=("minimax_payload",))


def _prompt_states():
    clip = _clip()
    return clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))[0][0]


def _reference(model, call, layers, states=None, **kw):
    video, audio = call["x"]
    return minimax_reference(model.model.diffusion_model, video, audio, call["timestep"],
                             _prompt_states() if states is None else states, _concepts().embeddings,
                             _concepts().positions, layers, payload=call.get("minimax_payload"), **kw)


def _assert_close(product, expected, what):
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    assert tuple(product.shape) == tuple(expected.shape)
    assert (diff <= atol + RTOL * expected.abs()).all(), f"{what}: max |product - reference| = {diff.max():.3e}"


def _generation(layers=(1, 2), steps=3, **option_kw):
    model = _reference_model()
    latent = tiny_minimax.empty_av_latent(frames=3, height=6, width=8)
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=layers, **option_kw))
    with _recorded_calls(model.model.diffusion_model) as calls:
        _sample(patched, latent, steps=steps, cfg=2.5)
    cond = [c for c in calls.calls if c["transformer_options"]["cond_or_uncond"] == [0]]
    assert len(cond) == steps and len(calls.calls) == 2 * steps  # batch size 1: cond and uncond in calls of their own
    return session.records[-1].saliency, cond


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
def test_generation_maps_match_reference(space, softmax):
    """Maps of a sampling run are the mean over its conditional model calls of the reference's maps."""
    saliency, calls = _generation(space=space, softmax=softmax)
    expected = [_reference(_reference_model(), call, (1, 2), space=space, softmax=softmax).maps for call in calls]
    assert saliency.maps.shape == (1, 3, 3, 3, 4)
    _assert_close(saliency.maps, sum(expected) / len(expected), f"{space} softmax={softmax}")


@pytest.mark.parametrize("deviation", MINIMAX_DEVIATIONS)
def test_comparison_catches_plausible_mistakes(deviation):
    """The video rows' modulation for the concepts, the audio rows among the picture's keys, or every concept at
    position 0: each moves the maps well outside the tolerance."""
    saliency, calls = _generation(steps=1)
    right = _reference(_reference_model(), calls[0], (1, 2)).maps
    _assert_close(saliency.maps, right, "the reference itself")
    wrong = _reference(_reference_model(), calls[0], (1, 2), deviation=deviation).maps
    assert (saliency.maps.double() - wrong).abs().max() > 30 * ATOL


# ---------------------------------------------------------------------------------------------
# encode mode: Concept Saliency on a video (+ audio) latent
# ---------------------------------------------------------------------------------------------


def _encode(latent, budget=0, concepts=None, layers=(1, 2), **option_kw):
    model = _reference_model()
    clip = _clip()
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    with _recorded_calls(model.model.diffusion_model) as calls:
        saliency = encode_saliency(model, concepts or _concepts(), latent, SaliencyOptions(layers=layers, **option_kw),
                                   conditioning=cond, cache_budget=budget, seed=2)
    return saliency, calls.calls


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
def test_encode_maps_match_reference(space, softmax):
    """One forward of the noised [video, audio] latent (noise level 0.5); the maps are the video's, per latent
    frame, and equal the reference's of that forward."""
    latent = tiny_minimax.empty_av_latent(frames=3, height=6, width=8, seed=4)
    saliency, calls = _encode(latent, space=space, softmax=softmax)
    assert len(calls) == 1
    assert saliency.maps.shape == (1, 3, 3, 3, 4)
    assert saliency.frames == 9 and saliency.image_size == (96, 128) and saliency.metadata["mode"] == "encode"
    assert float(calls[0]["timestep"][0]) == pytest.approx(500.0)
    _assert_close(saliency.maps, _reference(_reference_model(), calls[0], (1, 2), space=space, softmax=softmax).maps,
                  f"encode {space} softmax={softmax}")


def test_encode_requery_equals_a_full_run():
    """New concepts on an AV latent already analysed run the concept stream only and give a full run's maps and
    audio shares (the recording keeps the audio rows' stream too)."""
    latent = tiny_minimax.empty_av_latent(frames=2, height=6, width=8, seed=6)
    second = encode_concepts(_clip(), ["dog", "collar", "green grass"], pooling="first")
    first = _encode(latent, budget=1 << 30)[0]
    assert first.metadata["requery"] is False
    requery, calls = _encode(latent, budget=1 << 30, concepts=second, layers=(1,), space="value")
    assert requery.metadata["requery"] is True and not calls
    fresh, _ = _encode(latent, budget=0, concepts=second, layers=(1,), space="value")
    assert torch.equal(requery.maps, fresh.maps)
    assert requery.metadata["audio_shares"] == fresh.metadata["audio_shares"]
    assert len(requery.metadata["audio_shares"][0]) == 3


# ---------------------------------------------------------------------------------------------
# the nodes: stock KSampler on Empty MiniMax H3 AV Latent, and Concept Saliency on its LATENT
# ---------------------------------------------------------------------------------------------


def test_nodes_generation_and_encode_on_an_av_latent():
    """Concept Attention (Generation) -> stock KSampler on Empty MiniMax H3 AV Latent -> Concept Saliency from
    Sampling: the video and audio are the unpatched model's, and the sampler's nested LATENT finds its run; Concept
    Saliency on that LATENT gives maps of the same grid (16x space; 7 latent frames are the 22 frames the node
    snapped the length to: 1, 4, 4, 4, 4, 1, 4 pictures per latent frame)."""
    from comfy_extras.nodes_minimax_h3 import EmptyMiniMaxH3LatentAV, temporal_shape

    import nodes
    from concept_attention.nodes.concept_list import ConceptList
    from concept_attention.nodes.concept_saliency import ConceptSaliency
    from concept_attention.nodes.generation import ConceptAttentionPatch, SamplingSaliency

    model = tiny_minimax.minimax_model(depth=2, seed=3)
    latent = EmptyMiniMaxH3LatentAV.execute(width=128, height=96, length=9).result[0]
    video, audio = latent["samples"].unbind()
    frames = video.shape[2]
    concepts = ConceptList.execute(clip=_clip(), concepts="dog, grass, sky", pooling="mean").result[0]
    positive = nodes.CLIPTextEncode().encode(_clip(), PROMPT)[0]
    negative = nodes.CLIPTextEncode().encode(_clip(), NEGATIVE)[0]
    patched = ConceptAttentionPatch.execute(model=model, concepts=concepts, layers="all", start_percent=0.0,
                                            end_percent=1.0, space="output", softmax=True).result[0]

    def generate(m):
        return nodes.common_ksampler(m, 7, 2, 3.0, "euler", "simple", positive, negative, latent)[0]

    sampled = generate(patched)
    plain = generate(model)
    for a, b in zip(sampled["samples"].unbind(), plain["samples"].unbind()):
        assert torch.equal(a, b), "the patch must not change the video or the audio"
    saliency, _ = SamplingSaliency.execute(model=patched, latent=sampled).result
    assert tuple(saliency.maps.shape) == (1, 3, frames, 3, 4)
    assert frames == 7  # 9 frames snap to 22, MiniMax's 17k + 5 grid
    assert saliency.frames == temporal_shape(9)[0] == 22 and saliency.image_size == (96, 128)

    encoded, _ = ConceptSaliency.execute(model=model, concepts=concepts, layers="all", noise_level=0.5, samples=1,
                                         seed=0, space="output", softmax=True, latent=sampled,
                                         conditioning=positive).result
    assert tuple(encoded.maps.shape) == (1, 3, frames, 3, 4) and torch.isfinite(encoded.maps).all()


# ---------------------------------------------------------------------------------------------
# image to video: keyframe condition rows, a picture in the prompt
# ---------------------------------------------------------------------------------------------


def _i2v_positive(height=6, width=10, last_index=None):
    """What MiniMax H3 Image to Video puts on the conditioning: the prompt tokenized with its picture (a vision block
    whose rows take the video modality tag) and keyframes with their encoded latents (a VAE's output, here random)."""
    import node_helpers

    clip = _clip()
    g = torch.Generator().manual_seed(8)
    picture = torch.rand(1, 64, 64, 3, generator=g)
    with torch.no_grad():  # as ComfyUI runs its nodes (the vision tower's DeepStack adds refuse autograd)
        cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT, images=[picture]))
    keyframes = [{"resolved_frame_index": 0, "latent": torch.randn(1, 24, 1, height, width, generator=g)}]
    if last_index is not None:
        keyframes.append({"resolved_frame_index": last_index, "latent": torch.randn(1, 24, 1, height, width,
                                                                                     generator=g)})
    return node_helpers.conditioning_set_values(cond, {"minimax_keyframes": keyframes})


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_i2v_video_and_audio_bit_identical(dtype):
    """First and last frame keyframes (condition rows between the text and the audio), a picture in the prompt."""
    positive = _i2v_positive(last_index=8)
    assert (positive[0][1]["minimax_token_tags"] == 0).any()  # the picture's rows take the video tag
    _assert_conditioned_run_bit_identical(dtype, positive)


def _assert_conditioned_run_bit_identical(dtype, positive):
    """Video and audio of a 3-frame 6x10 run equal with the patch on and off; the maps cover the target video."""
    model = tiny_minimax.minimax_model(dtype=dtype)
    latent = tiny_minimax.empty_av_latent(frames=3, height=6, width=10)
    plain = _sample(model, latent, positive=positive).unbind()
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 1, 2)))
    out = _sample(patched, latent, positive=positive).unbind()
    assert all(torch.isfinite(t).all() for t in plain)
    assert torch.equal(plain[0], out[0]) and torch.equal(plain[1], out[1])
    maps = session.records[-1].saliency.maps
    assert maps.shape == (1, 3, 3, 3, 5) and torch.isfinite(maps).all()


@pytest.mark.parametrize("space", ref.SPACES)
def test_i2v_generation_maps_match_reference(space):
    """With keyframe condition rows (noised by the run's seed, at their own timestep, before the audio) and a
    picture's video-tagged rows in the prompt, the maps are still the reference's over the target video alone."""
    _assert_conditioned_maps_match(space, _i2v_positive(height=6, width=8, last_index=8), "keyframes", 2, "i2v")


def _assert_conditioned_maps_match(space, positive, payload_key: str, count: int, label: str):
    """Generation maps over a 3-frame 6x8 run with conditioning rows (`count` of payload_key on every conditional
    call) equal the reference's over the target video alone."""
    model = _reference_model()
    latent = tiny_minimax.empty_av_latent(frames=3, height=6, width=8)
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 2), space=space))
    with _recorded_calls(model.model.diffusion_model) as calls:
        _sample(patched, latent, steps=2, cfg=2.5, positive=positive)
    cond = [c for c in calls.calls if c["transformer_options"]["cond_or_uncond"] == [0]]
    assert len(cond) == 2 and all(len(c["minimax_payload"][payload_key]) == count for c in cond)
    expected = [_reference(model, call, (0, 2), states=positive[0][0], space=space).maps for call in cond]
    _assert_close(session.records[-1].saliency.maps, sum(expected) / len(expected), f"{label} {space}")


# ---------------------------------------------------------------------------------------------
# reference to video: reference blocks (a picture, a clip with its soundtrack, an audio) before the targets
# ---------------------------------------------------------------------------------------------


def _r2v_positive():
    """What MiniMax H3 Reference to Video puts on the conditioning: the prompt presented with its references
    (<Picture 1>, <Audio 1> <Video 1> with 2-fps frame pairs, <Audio 2>) and the reference blocks with their encoded
    latents (a VAE's and an audio VAE's output, here random)."""
    import node_helpers

    clip = _clip()
    g = torch.Generator().manual_seed(9)
    picture = torch.rand(1, 64, 64, 3, generator=g)
    clip_frames = torch.rand(2, 64, 96, 3, generator=g)
    items = [{"type": "image", "data": picture}, {"type": "audio"},
             {"type": "video", "data": clip_frames, "timestamps": [0.0, 0.5]}, {"type": "audio"}]
    blocks = [
        {"kind": "image", "latent_h": 4, "latent_w": 4, "latent": torch.randn(1, 24, 1, 4, 4, generator=g)},
        {"kind": "video_audio", "latent_t": 2, "latent_h": 4, "latent_w": 6, "ref_audio_t": 5,
         "latent": torch.randn(1, 24, 2, 4, 6, generator=g), "audio_latent": torch.randn(1, 32, 2, 5, generator=g)},
        {"kind": "audio", "ref_audio_t": 4, "audio_latent": torch.randn(1, 32, 2, 4, generator=g)},
    ]
    with torch.no_grad():
        cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT, minimax_ref_items=items))
    return node_helpers.conditioning_set_values(cond, {"minimax_refs": blocks})


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_r2v_video_and_audio_bit_identical(dtype):
    _assert_conditioned_run_bit_identical(dtype, _r2v_positive())


@pytest.mark.parametrize("space", ref.SPACES)
def test_r2v_generation_maps_match_reference(space):
    """With reference blocks between the text and the targets (their own timesteps, positions that push the
    targets' timeline), the maps are the reference's over the target video alone."""
    _assert_conditioned_maps_match(space, _r2v_positive(), "refs", 3, "r2v")


# ---------------------------------------------------------------------------------------------
# audio shares: the concepts against the target audio, a share per audio latent frame
# ---------------------------------------------------------------------------------------------


def _shares(saliency):
    return torch.tensor(saliency.metadata["audio_shares"], dtype=torch.float64)


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
def test_audio_shares_match_reference(space, softmax):
    """Generation: per audio latent frame, the concepts' scores over the target audio rows (mean of the two stereo
    rows, averaged over layers and conditional calls) are the reference's, to the 6 decimals the metadata keeps;
    with softmax on, each frame's shares sum to 1."""
    saliency, calls = _generation(space=space, softmax=softmax)
    audio_frames = calls[0]["x"][1].shape[-1]
    expected = sum(_reference(_reference_model(), call, (1, 2), space=space, softmax=softmax).audio_shares
                   for call in calls) / len(calls)
    shares = _shares(saliency)
    assert saliency.metadata["audio_frames"] == audio_frames == 15  # 3 latent frames: 9 pictures, 15 audio frames
    assert shares.shape == (1, 3, audio_frames)
    assert (shares - expected).abs().max() <= 1e-6 + 1e-5 * expected.abs().max()
    if softmax:
        torch.testing.assert_close(shares.sum(1), torch.ones(1, audio_frames, dtype=torch.float64), atol=1e-5, rtol=0)


def test_audio_shares_in_encode_mode_and_with_references():
    """Encode mode on an AV latent carries them too (reference to video: the reference audio rows are not the
    target's), and they equal the reference's."""
    latent = tiny_minimax.empty_av_latent(frames=3, height=6, width=8, seed=4)
    saliency, calls = _encode(latent)
    expected = _reference(_reference_model(), calls[0], (1, 2)).audio_shares
    assert (_shares(saliency) - expected).abs().max() <= 2e-6

    model = _reference_model()
    positive = _r2v_positive()
    patched, session = install_concept_attention(model, _concepts(), SaliencyOptions(layers=(0, 2)))
    with _recorded_calls(model.model.diffusion_model) as calls:
        _sample(patched, tiny_minimax.empty_av_latent(frames=3, height=6, width=8), steps=1, cfg=2.5,
                positive=positive)
    cond = [c for c in calls.calls if c["transformer_options"]["cond_or_uncond"] == [0]]
    expected = _reference(model, cond[0], (0, 2), states=positive[0][0]).audio_shares
    assert (_shares(session.records[-1].saliency) - expected).abs().max() <= 2e-6


def test_audio_shares_survive_save_and_load(tmp_path):
    """Save Saliency / Load Saliency keep the audio shares (SALIENCY metadata)."""
    import os
    import shutil

    import folder_paths

    from concept_attention.nodes.saliency_files import LoadSaliency, SaveSaliency

    saliency, _ = _generation(steps=1)
    before = (folder_paths.get_output_directory(), folder_paths.get_input_directory())
    folder_paths.set_output_directory(str(tmp_path))
    folder_paths.set_input_directory(str(tmp_path))
    try:
        with torch.inference_mode():
            [saved] = SaveSaliency.execute(saliency=saliency, filename_prefix="minimax/maps").ui["saliency_files"]
            shutil.copyfile(os.path.join(tmp_path, saved), os.path.join(tmp_path, "av_maps.safetensors"))
            loaded = LoadSaliency.execute(file="av_maps.safetensors").result[0]
    finally:
        folder_paths.set_output_directory(before[0])
        folder_paths.set_input_directory(before[1])
    assert torch.equal(loaded.maps, saliency.maps)
    assert loaded.metadata["audio_shares"] == saliency.metadata["audio_shares"]
    assert loaded.metadata["audio_frames"] == saliency.metadata["audio_frames"]


# ---------------------------------------------------------------------------------------------
# concepts from another encoder
# ---------------------------------------------------------------------------------------------


def test_concepts_of_another_qwen3_vl_are_refused():
    """Krea 2's Qwen3-VL 4B states are another text space than MiniMax's Qwen3-VL 32B: refused by name."""
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError
    from concept_attention_tests.comfy.tiny import tiny_text_encoders

    other = encode_concepts(tiny_text_encoders.krea2_clip(), ["dog"])
    with pytest.raises(ConceptAttentionError, match=r"qwen3vl_4b states\), but this MiniMax H3 model reads qwen3vl_32b"):
        install_concept_attention(_reference_model(), other, SaliencyOptions(layers=(0,)))
