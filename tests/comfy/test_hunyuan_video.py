"""HunyuanVideo 1 (T2V, I2V concat, SkyReels I2V, guiding_frame_index, ref_latent), HunyuanVideo 1.5 and
HunyuanImage 2.1: the video is bit-identical with and without ConceptAttention, the maps equal the independent fp64
reference (tests/comfy/references/reference_hunyuan_video.py, the TokenRefiner path of the concepts included), plausible
mistakes are told apart, and wrong inputs get clear errors.

Models come from comfy.supported_models at tiny widths (tiny_hunyuan_video.py), in real ModelPatchers, sampled with
ComfyUI's own sampling (what KSampler runs); concepts come from each family's real ComfyUI text encoder at tiny
configs (Llava-Llama-3 + CLIP-L for HunyuanVideo 1, Qwen2.5-VL + byT5 for 1.5 and HunyuanImage 2.1).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.references import reference_hunyuan_video as ref
from concept_attention_tests.comfy.references.reference_concept_attention import SPACES
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_hunyuan_video, tiny_text_encoders

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog running on the grass under the sky"
GLYPH_PROMPT = 'a dog on the grass holding a sign that says "HELLO"'  # quoted text also goes to byT5
RTOL, ATOL = 1e-5, 3e-6

_CLIPS = {"hv1": tiny_text_encoders.hunyuan_video_clip, "hv15": tiny_text_encoders.hunyuan_video15_clip,
          "hi21": tiny_text_encoders.hunyuan_image21_clip}


@functools.cache
def _clip(name):
    return _CLIPS[name]()


@functools.cache
def _concepts(name):
    return encode_concepts(_clip(name), CONCEPTS)


@functools.cache
def _reference_model(name):
    build = {"hv1": tiny_hunyuan_video.hunyuan_video_model, "hv15": tiny_hunyuan_video.hunyuan_video15_model,
             "hi21": tiny_hunyuan_video.hunyuan_image21_model}[name]
    return build(seed=41)


_module_scope = cleared_after_module(_clip, _concepts, _reference_model)


def _patched(model, name, layers=(0, 1, 2), **option_kw):
    return install_concept_attention(model, _concepts(name), SaliencyOptions(layers=layers, **option_kw))


def _sampled_saliency(model, name, **kwargs):
    """Sample with and without the patch (every layer): the pictures must be finite and equal, bit for bit; returns
    the patched run's maps."""
    plain = sample(model, _clip(name), cfg=3.0, **kwargs)
    patched, session = _patched(model, name)
    out = sample(patched, _clip(name), cfg=3.0, **kwargs)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    return session.records[-1].saliency


def _start_frame(channels, h, w, frames, seed=5):
    """What HunyuanImageToVideo gives the conditioning: the start image's latent (one frame) and a mask that is 0 on
    the frames it covers."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones((1, 1, frames, h, w))
    mask[:, :, :1] = 0.0
    return torch.randn(1, channels, 1, h, w, generator=g), mask


def _hv15_start(h, w, frames, seed=5):
    """What HunyuanVideo15ImageToVideo gives the conditioning: the start image's latent in the first frame of a
    clip-long latent, its mask, and the start image's vision features."""
    image, mask = _start_frame(32, h, w, frames, seed)
    padded = torch.zeros((1, 32, frames, h, w))
    padded[:, :, :1] = image
    vision = torch.randn(1, 4, tiny_hunyuan_video.VISION_DIM, generator=torch.Generator().manual_seed(seed + 1))
    return {"concat_latent_image": padded, "concat_mask": mask,
            "clip_vision_output": SimpleNamespace(last_hidden_state=vision)}


def _hv1_case(case, frames=3, h=6, w=10):
    """(model variant, latent shape, conditioning extras) of a HunyuanVideo 1 mode, as ComfyUI's nodes set them."""
    shape = (2, 16, frames, h, w)
    if case == "t2v":
        return "t2v", shape, {}
    image, mask = _start_frame(16, h, w, frames)
    if case == "i2v (concat)":
        return "i2v", shape, {"concat_latent_image": image, "concat_mask": mask}
    if case == "skyreels i2v":
        return "skyreels", shape, {"concat_latent_image": image}
    if case == "guiding_frame_index":
        # ComfyUI adds the guidance embedding to vec [B, 2, C] as [B, C]: it broadcasts for one picture only.
        return "t2v", (1, 16, frames, h, w), {"guiding_frame_index": 0}
    if case == "ref_latent":
        # ComfyUI writes the reference ids in place into a batch-expanded view: it runs one picture per call only.
        return "t2v", (1, 16, frames, h, w), {"ref_latent": image}
    raise ValueError(case)


HV1_CASES = ["t2v", "i2v (concat)", "skyreels i2v", "guiding_frame_index", "ref_latent"]


# ---------------------------------------------------------------------------------------------
# the video does not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", HV1_CASES)
def test_hunyuan_video_bit_identical(case, dtype):
    """Batch 2 (1 with guiding_frame_index and ref_latent, as ComfyUI runs them), cond + uncond (cfg 3), 3 latent
    frames (an odd count)."""
    variant, shape, extra = _hv1_case(case)
    model = tiny_hunyuan_video.hunyuan_video_model(dtype=dtype, variant=variant)
    saliency = _sampled_saliency(model, "hv1", latent_shape=shape, prompt=PROMPT, **extra)
    # the picture's tokens only (not the reference latent's): 3 frames of 3x5 tokens; 9 pixel frames
    assert saliency.maps.shape == (shape[0], 3, 3, 3, 5)
    assert saliency.frames == 9 and saliency.metadata["model_family"] == "HunyuanVideo"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", ["t2v", "i2v"])
def test_hunyuan_video15_bit_identical(case, dtype):
    """54-dual-block layout (no single blocks), byT5 glyph tokens before the text, and for I2V the start image's
    latent and mask in the input channels and its vision tokens before the text; 5 latent frames, 5x7 latent."""
    model = tiny_hunyuan_video.hunyuan_video15_model(dtype=dtype)
    shape, extra = (2, 32, 5, 5, 7), {}
    if case == "i2v":
        extra = _hv15_start(5, 7, 5)
    saliency = _sampled_saliency(model, "hv15", latent_shape=shape, prompt=GLYPH_PROMPT, **extra)
    assert saliency.maps.shape == (2, 3, 5, 5, 7) and saliency.metadata["model_family"] == "HunyuanVideo 1.5"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_hunyuan_image21_bit_identical(dtype):
    model = tiny_hunyuan_video.hunyuan_image21_model(dtype=dtype)
    saliency = _sampled_saliency(model, "hi21", latent_shape=(2, 64, 5, 7), prompt=GLYPH_PROMPT)
    assert saliency.maps.shape == (2, 3, 5, 7) and saliency.frames == 0  # a picture: no time axis
    assert saliency.metadata["model_family"] == "HunyuanImage 2.1"


# ---------------------------------------------------------------------------------------------
# maps == the independent reference (generation mode: every model call with conditional rows)
# ---------------------------------------------------------------------------------------------


class _Calls:
    """The diffusion model's own inputs on each of its calls, by name, recorded with a forward pre-hook."""

    NAMES = ("x", "timestep", "context", "y", "txt_byt5", "clip_fea", "guidance", "attention_mask",
             "guiding_frame_index", "ref_latent")

    def __init__(self, dm):
        self.dm = dm
        self.calls = []

    def __enter__(self):
        def hook(module, args, kwargs):
            call = dict(zip(self.NAMES, args))
            call.update({k: v for k, v in kwargs.items() if k in self.NAMES})
            call["cond_or_uncond"] = list(kwargs["transformer_options"]["cond_or_uncond"])
            self.calls.append({k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in call.items()})
        self.handle = self.dm.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def conditional(self, batch):
        """Each call that has conditional rows, cut to those rows."""
        for call in self.calls:
            chunks = call["cond_or_uncond"]
            ranges = [torch.arange(j * batch, (j + 1) * batch) for j, kind in enumerate(chunks) if kind == 0]
            if not ranges:
                continue
            rows = torch.cat(ranges)
            size = call["x"].shape[0]
            yield {k: (v[rows] if torch.is_tensor(v) and v.ndim and v.shape[0] == size else v) for k, v in call.items()}


def _generate(name, model, shape, extra, prompt=PROMPT, **option_kw):
    clip = _clip(name)
    patched, session = _patched(model, name, layers=option_kw.pop("layers", (0, 2)), **option_kw)
    with _Calls(model.model.diffusion_model) as calls:
        sample(patched, clip, latent_shape=shape, cfg=3.0, steps=2, prompt=prompt, **extra)
    return session.records[-1].saliency, calls


def _reference(name, model, calls, batch, layers=(0, 2), **kw):
    per_call = [ref.hunyuan_video_reference(model.model.diffusion_model, call, _concepts(name).embeddings, layers,
                                            **kw) for call in calls.conditional(batch)]
    assert per_call, "no model call had conditional rows"
    return sum(per_call) / len(per_call)


def _assert_close(product, expected, what):
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    assert tuple(product.shape) == tuple(expected.shape)
    assert (diff <= atol + RTOL * expected.abs()).all(), f"{what}: max |product - reference| = {diff.max():.3e}"


@pytest.mark.parametrize("case", HV1_CASES)
def test_hunyuan_video_maps_match_reference(case):
    variant, shape, extra = _hv1_case(case, frames=3, h=6, w=8)
    model = tiny_hunyuan_video.hunyuan_video_model(seed=41, variant=variant)
    saliency, calls = _generate("hv1", model, shape, extra)
    _assert_close(saliency.maps, _reference("hv1", model, calls, shape[0]), f"HunyuanVideo {case}")


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", SPACES)
def test_hunyuan_video_maps_match_reference_in_every_space(space, softmax):
    model = _reference_model("hv1")
    saliency, calls = _generate("hv1", model, (2, 16, 1, 6, 8), {}, space=space, softmax=softmax)
    expected = _reference("hv1", model, calls, 2, space=space, softmax=softmax)
    _assert_close(saliency.maps, expected, f"HunyuanVideo {space}")


@pytest.mark.parametrize("case", ["t2v", "i2v"])
def test_hunyuan_video15_maps_match_reference(case):
    model = _reference_model("hv15")
    extra = {}
    if case == "i2v":
        extra = _hv15_start(5, 7, 3)
    saliency, calls = _generate("hv15", model, (2, 32, 3, 5, 7), extra, prompt=GLYPH_PROMPT)
    assert any(call.get("txt_byt5") is not None for call in calls.calls)  # the glyph tokens are in the text
    _assert_close(saliency.maps, _reference("hv15", model, calls, 2), f"HunyuanVideo 1.5 {case}")


def test_hunyuan_image21_maps_match_reference():
    model = _reference_model("hi21")
    saliency, calls = _generate("hi21", model, (2, 64, 5, 7), {}, prompt=GLYPH_PROMPT)
    assert any(call.get("txt_byt5") is not None for call in calls.calls)
    _assert_close(saliency.maps, _reference("hi21", model, calls, 2), "HunyuanImage 2.1")


@pytest.mark.parametrize("name,shape", [("hv1", (2, 16, 3, 6, 8)), ("hv15", (1, 32, 3, 5, 7)), ("hi21", (2, 64, 5, 7))])
def test_encode_mode_maps_match_reference(name, shape):
    """Encode mode on an existing video (or picture) latent: one noised forward, read up to the last selected block."""
    from concept_attention.concept_patch.encode import encode_saliency

    model = _reference_model(name)
    clip = _clip(name)
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(12))
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(GLYPH_PROMPT if name != "hv1" else PROMPT))
    with _Calls(model.model.diffusion_model) as calls:
        saliency = encode_saliency(model, _concepts(name), latent, SaliencyOptions(layers=(0, 2)), conditioning=cond)
    assert len(calls.calls) == 1
    if len(shape) == 5:
        assert saliency.frames == 9  # 3 latent frames of a causal 4x video VAE
    _assert_close(saliency.maps, _reference(name, model, calls, shape[0]), f"{name} encode mode")


_MISTAKES = (
    [("hv1", "t2v", d) for d in ref.DEVIATIONS]
    + [("hv1", "guiding_frame_index", d) for d in ref.GUIDING_DEVIATIONS]
    + [("hv1", "ref_latent", d) for d in ref.REF_LATENT_DEVIATIONS]
    + [("hv15", "t2v", d) for d in ref.TYPE_EMBEDDING_DEVIATIONS]
)


@pytest.mark.parametrize("name,case,deviation", _MISTAKES, ids=[f"{n}-{c}-{d}" for n, c, d in _MISTAKES])
def test_comparison_catches_plausible_mistakes(name, case, deviation):
    """A refiner without the timestep, concepts through txt_in's projection only, ungated updates, the first frame's
    modulation row, the reference latent's tokens read as the picture, HunyuanVideo 1.5 concepts without their
    type embedding: each moves the maps well outside the tolerance."""
    if name == "hv1":
        variant, shape, extra = _hv1_case(case, frames=3, h=6, w=8)
        model = tiny_hunyuan_video.hunyuan_video_model(seed=41, variant=variant)
    else:
        model, shape, extra = _reference_model("hv15"), (2, 32, 3, 5, 7), {}
    saliency, calls = _generate(name, model, shape, extra)
    wrong = _reference(name, model, calls, shape[0], deviation=deviation)
    assert (saliency.maps.double() - wrong).abs().max() > 30 * ATOL


# ---------------------------------------------------------------------------------------------
# concept encoding with these text encoders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hv1", "hv15", "hi21"])
def test_concepts_pool_their_own_tokens_in_the_user_span(name):
    """Each encoder keeps the template's user span (HunyuanVideo 1: cut to it, ending with <|eot_id|>; Qwen2.5-VL:
    the system prompt cut off, the turn's end and the assistant opening kept): a concept's vector is the mean of the
    rows of its own text's tokens, which open its conditioning, and nothing after them."""
    clip = _clip(name)
    kinds = {"hv1": "llama", "hv15": "qwen25_7b", "hi21": "qwen25_7b"}
    tokenizer = getattr(clip.tokenizer, kinds[name]).tokenizer
    for concept, vector in zip(CONCEPTS, _concepts(name).embeddings):
        own = [t for t in tokenizer(concept)["input_ids"] if t != 128000]  # without Llama-3's begin-of-text
        cond = clip.encode_from_tokens(clip.tokenize(concept))
        assert cond.shape[1] > len(own)
        assert torch.allclose(vector, cond[0, : len(own)].float().mean(dim=0), rtol=1e-5, atol=1e-6)
    assert _concepts(name).text_space == kinds[name]


# ---------------------------------------------------------------------------------------------
# wrong inputs
# ---------------------------------------------------------------------------------------------


def test_concepts_of_another_text_encoder_are_refused():
    hv1 = tiny_hunyuan_video.hunyuan_video_model(depth=1, single_depth=0)
    with pytest.raises(ConceptAttentionError, match=r"qwen25_7b states.*HunyuanVideo model reads llama states"):
        install_concept_attention(hv1, _concepts("hv15"), SaliencyOptions(layers=(0,)))
    hv15 = tiny_hunyuan_video.hunyuan_video15_model(depth=1)
    with pytest.raises(ConceptAttentionError, match=r"llama states.*HunyuanVideo 1.5 model reads qwen25_7b"):
        install_concept_attention(hv15, _concepts("hv1"), SaliencyOptions(layers=(0,)))


def test_concepts_of_the_same_encoder_at_another_layer_are_refused():
    """Qwen-Image reads Qwen2.5-VL's last layer, HunyuanVideo 1.5 and HunyuanImage 2.1 its third from last: the same
    space and width, so only the layer tells the concepts apart, and a mix-up is named rather than mapped."""
    from concept_attention_tests.comfy.tiny import tiny_models

    qwen_concepts = encode_concepts(tiny_text_encoders.qwen_image_clip(), CONCEPTS)
    hv15_concepts = _concepts("hv15")
    assert (qwen_concepts.text_space, qwen_concepts.text_layer) == ("qwen25_7b", "last")
    assert (hv15_concepts.text_space, hv15_concepts.text_layer) == ("qwen25_7b", "hidden -3")
    assert _concepts("hi21").text_layer == "hidden -3"
    hv15 = tiny_hunyuan_video.hunyuan_video15_model(depth=1)
    with pytest.raises(ConceptAttentionError, match=r"its last layer, but this HunyuanVideo 1.5 model reads that "
                                                     r"encoder's hidden -3 layer; build the Concept List"):
        install_concept_attention(hv15, qwen_concepts, SaliencyOptions(layers=(0,)))
    with pytest.raises(ConceptAttentionError, match=r"its hidden -3 layer, but this Qwen-Image model reads that "
                                                     r"encoder's last layer"):
        install_concept_attention(tiny_models.qwen_image_model(depth=1), hv15_concepts, SaliencyOptions(layers=(0,)))


def test_a_layer_past_the_last_double_block_is_refused():
    model = tiny_hunyuan_video.hunyuan_video_model(depth=2, single_depth=1)
    with pytest.raises(ConceptAttentionError, match=r"layer 2 was selected but this HunyuanVideo model has 2 dual"):
        install_concept_attention(model, _concepts("hv1"), SaliencyOptions(layers=(2,)))


def test_text_modulated_in_parts_is_refused_clearly():
    """The concepts stand in for text that takes one modulation row; a text split over rows is named, not guessed."""
    from concept_attention.concept_patch.families.hunyuan_video import HunyuanVideoFamily

    assert HunyuanVideoFamily.text_vec_row({"modulation_dims_txt": [(0, None, 1)]}) == 1
    with pytest.raises(ConceptAttentionError, match=r"modulates its text tokens in parts"):
        HunyuanVideoFamily.text_vec_row({"modulation_dims_txt": [(0, 4, 0), (4, None, 1)]})


def test_cfg_one_reads_every_step():
    """cfg 1: ComfyUI runs the conditional rows alone; every step is read and the video is unchanged."""
    model = _reference_model("hv1")
    patched, session = _patched(model, "hv1", layers=(0,))
    out = sample(patched, _clip("hv1"), latent_shape=(1, 16, 1, 4, 4), cfg=1.0, steps=2, prompt=PROMPT)
    plain = sample(model, _clip("hv1"), latent_shape=(1, 16, 1, 4, 4), cfg=1.0, steps=2, prompt=PROMPT)
    assert torch.equal(out, plain)
    assert session.records[-1].saliency.metadata["model_calls_used"] == 2
