"""Qwen-Image (and Edit 2509/2511) and HiDream-I1/E1: bit-identical pictures, maps equal to the independent fp64
reference (concept RoPE on Qwen's text diagonal included), and HiDream's object-patched block hook chaining with
another pack's patches on the same blocks.

Concepts come from each family's real ComfyUI text encoder with tiny configs: Qwen-Image's Qwen2.5-VL encoder
(which cuts the system prompt off its output), HiDream's four-encoder TE with only T5-XXL loaded.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.references import reference_concept_attention as ref
from concept_attention_tests.comfy.sampling import ModelInputs, sample
from concept_attention_tests.comfy.tiny import tiny_models, tiny_text_encoders

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CONCEPTS = ["dog", "green grass", "sky"]
RTOL, ATOL = 1e-5, 3e-6


@functools.cache
def _clip(name):
    return tiny_text_encoders.qwen_image_clip() if name == "qwen" else tiny_models.hidream_clip()


@functools.cache
def _concepts(name):
    return encode_concepts(_clip(name), CONCEPTS)


def _patched(model, name, layers=(0, 1, 2)):
    return install_concept_attention(model, _concepts(name), SaliencyOptions(layers=layers))


# ---------------------------------------------------------------------------------------------
# the picture does not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_qwen_image_bit_identical(dtype):
    model = tiny_models.qwen_image_model(dtype=dtype)
    shape = (2, 16, 1, 6, 10)  # batch 2, non-square, cond + uncond below
    plain = sample(model, _clip("qwen"), latent_shape=shape, cfg=3.0)
    patched, session = _patched(model, "qwen")
    out = sample(patched, _clip("qwen"), latent_shape=shape, cfg=3.0)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    saliency = session.records[-1].saliency
    assert saliency.maps.shape == (2, 3, 3, 5) and saliency.metadata["model_family"] == "Qwen-Image"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("edit", ["2509 (index)", "2511 (index_timestep_zero)"])
def test_qwen_image_edit_with_reference_image_bit_identical(edit, dtype):
    """Reference latents follow the picture; Edit 2511 gives them the timestep-0 modulation rows."""
    model = tiny_models.qwen_image_model(dtype=dtype, edit_2511=edit.startswith("2511"))
    refs = [torch.randn(1, 16, 1, 4, 6, generator=torch.Generator().manual_seed(3))]
    kwargs = dict(latent_shape=(1, 16, 1, 6, 8), cfg=2.0, reference_latents=refs)
    plain = sample(model, _clip("qwen"), **kwargs)
    patched, session = _patched(model, "qwen")
    out = sample(patched, _clip("qwen"), **kwargs)
    assert torch.equal(plain, out)
    assert session.records[-1].saliency.maps.shape == (1, 3, 3, 4)  # the picture's tokens, not the reference's


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", ["I1", "E1"])
def test_hidream_bit_identical(variant, dtype):
    model = tiny_models.hidream_model(dtype=dtype)
    extra = {"concat_latent_image": torch.randn(2, 16, 6, 10, generator=torch.Generator().manual_seed(5))} \
        if variant == "E1" else {}
    plain = sample(model, _clip("hidream"), latent_shape=(2, 16, 6, 10), cfg=3.0, **extra)
    patched, session = _patched(model, "hidream")
    out = sample(patched, _clip("hidream"), latent_shape=(2, 16, 6, 10), cfg=3.0, **extra)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    # E1's condition picture sits beside the picture: the maps cover the picture only
    assert session.records[-1].saliency.maps.shape == (2, 3, 3, 5)


# ---------------------------------------------------------------------------------------------
# maps == the independent reference
# ---------------------------------------------------------------------------------------------


def _encode(model, name, latent, cond=None, **option_kw):
    from concept_attention.concept_patch.encode import encode_saliency

    clip = _clip(name)
    cond = cond or clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass under the sky"))
    option_kw.setdefault("layers", (0, 2))
    with ModelInputs(model.model.diffusion_model) as inputs:
        saliency = encode_saliency(model, _concepts(name), latent, SaliencyOptions(**option_kw), conditioning=cond)
    return saliency, inputs


def _assert_close(product, expected, what):
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    assert tuple(product.shape) == tuple(expected.shape)
    assert (diff <= atol + RTOL * expected.abs()).all(), f"{what}: max |product - reference| = {diff.max():.3e}"


@functools.cache
def _qwen_model():
    return tiny_models.qwen_image_model(seed=31)


def _qwen_reference(model, inputs, space="output", softmax=True, deviation=None):
    assert inputs.get(3, "attention_mask") is None  # one unpadded prompt: no text mask
    concepts = _concepts("qwen")
    return ref.qwen_image_reference(model.model.diffusion_model, inputs.get(0, "x"), inputs.get(1, "timestep"),
                                    inputs.get(2, "context"), concepts.embeddings, concepts.positions, (0, 2),
                                    space=space, softmax=softmax, deviation=deviation)


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
def test_qwen_image_maps_match_reference(space, softmax):
    model = _qwen_model()
    latent = torch.randn(2, 16, 1, 7, 10, generator=torch.Generator().manual_seed(11))
    saliency, inputs = _encode(model, "qwen", latent, space=space, softmax=softmax)
    _assert_close(saliency.maps, _qwen_reference(model, inputs, space, softmax).maps, f"Qwen-Image {space}")


@pytest.mark.parametrize("deviation", ref.QWEN_DEVIATIONS)
def test_qwen_image_comparison_catches_plausible_mistakes(deviation):
    """Concepts without RoPE, at text positions without the model's txt_start, or updated without gates:
    each moves the maps well outside the tolerance."""
    model = _qwen_model()
    latent = torch.randn(2, 16, 1, 7, 10, generator=torch.Generator().manual_seed(11))
    saliency, inputs = _encode(model, "qwen", latent)
    wrong = _qwen_reference(model, inputs, deviation=deviation).maps
    assert (saliency.maps.double() - wrong).abs().max() > 30 * ATOL


@functools.cache
def _hidream_reference_model():
    # No MoE in the image FFN: it acts on image tokens only, which the method leaves to the model; the
    # reference then needs no router. The bit-identity tests above run the MoE.
    return tiny_models.hidream_model(seed=32, experts=0)


_module_scope = cleared_after_module(_clip, _concepts, _qwen_model, _hidream_reference_model)


def _hidream_reference(model, inputs, space="output", softmax=True, deviation=None):
    return ref.hidream_reference(
        model.model.diffusion_model, inputs.get(0, "x"), inputs.get(1, "t"), inputs.get(3, "context"),
        inputs.get(2, "y"), inputs.get(4, "encoder_hidden_states_llama3"), _concepts("hidream").embeddings, (0, 2),
        space=space, softmax=softmax, deviation=deviation, image_cond=inputs.get(5, "image_cond"))


@pytest.mark.parametrize("variant", ["I1", "E1"])
@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
def test_hidream_maps_match_reference(space, softmax, variant):
    model = _hidream_reference_model()
    g = torch.Generator().manual_seed(12)
    latent = torch.randn(2, 16, 7, 10, generator=g)
    cond = None
    if variant == "E1":
        clip = _clip("hidream")
        cond = [[c, {**d, "concat_latent_image": torch.randn(2, 16, 7, 10, generator=g)}]
                for c, d in clip.encode_from_tokens_scheduled(clip.tokenize("a dog"))]
    saliency, inputs = _encode(model, "hidream", latent, cond, space=space, softmax=softmax)
    assert saliency.maps.shape == (2, 3, 4, 5)
    _assert_close(saliency.maps, _hidream_reference(model, inputs, space, softmax).maps, f"HiDream {variant} {space}")


@pytest.mark.parametrize("deviation", ref.HIDREAM_DEVIATIONS)
def test_hidream_comparison_catches_plausible_mistakes(deviation):
    model = _hidream_reference_model()
    saliency, inputs = _encode(model, "hidream", torch.randn(2, 16, 7, 10, generator=torch.Generator().manual_seed(12)))
    wrong = _hidream_reference(model, inputs, deviation=deviation).maps
    assert (saliency.maps.double() - wrong).abs().max() > 30 * ATOL


# ---------------------------------------------------------------------------------------------
# the object-patched hook chains with other packs' patches on the same blocks
# ---------------------------------------------------------------------------------------------


def test_hidream_hook_chains_with_another_packs_object_patch_and_attention_override():
    """Another pack object-patched block 1's forward (here: it scales the image tokens it returns) and set
    an attention override; with ConceptAttention on top both still run, the picture is what the other
    patches alone give, and the maps are recorded."""
    model = tiny_models.hidream_model(seed=33)
    calls = {"block": 0, "attention": 0}
    block = model.get_model_object("diffusion_model.double_stream_blocks.1")
    block_forward = type(block).forward.__get__(block)

    def other_pack_block(*args, **kwargs):
        calls["block"] += 1
        image, text = block_forward(*args, **kwargs)
        return image * 0.5, text

    def attention_override(func, *args, **kwargs):
        calls["attention"] += 1
        return func(*args, **kwargs)

    other = model.clone()
    other.add_object_patch("diffusion_model.double_stream_blocks.1.forward", other_pack_block)
    other.model_options["transformer_options"]["optimized_attention_override"] = attention_override
    reference = sample(other, _clip("hidream"), latent_shape=(1, 16, 6, 6), seed=6, cfg=1.0)
    counted = dict(calls)
    assert counted["block"] > 0 and counted["attention"] > 0
    assert not torch.equal(reference, sample(model, _clip("hidream"), latent_shape=(1, 16, 6, 6), seed=6, cfg=1.0))
    patched, session = _patched(other, "hidream")
    out = sample(patched, _clip("hidream"), latent_shape=(1, 16, 6, 6), seed=6, cfg=1.0)
    assert torch.equal(out, reference)
    assert calls["block"] == 2 * counted["block"] and calls["attention"] == 2 * counted["attention"]
    assert session.find_record(out).saliency is not None
    # the other pack's patch is still what the unpatched clone has
    assert other.object_patches["diffusion_model.double_stream_blocks.1.forward"] is other_pack_block


def test_hidream_dit_patch_of_another_pack_runs_through_the_hook():
    """The hook offers HiDream's blocks to any dit replace patch, e.g. another pack's on block 0, chained
    with the concept stream's."""
    model = tiny_models.hidream_model(seed=34)
    seen = []

    def other_dit_patch(args, extra):
        seen.append(tuple(args["img"].shape))
        out = extra["original_block"](args)
        return {"img": out["img"] + 0.01, "txt": out["txt"]}

    other = model.clone()
    other.set_model_patch_replace(other_dit_patch, "dit", "double_block", 0)
    patched, session = _patched(other, "hidream")
    out = sample(patched, _clip("hidream"), latent_shape=(1, 16, 6, 6), seed=7, cfg=1.0)
    assert seen, "the other pack's dit patch never ran"
    assert session.find_record(out).saliency is not None
    plain = sample(model, _clip("hidream"), latent_shape=(1, 16, 6, 6), seed=7, cfg=1.0)
    assert not torch.equal(out, plain)  # its change to the image stream took effect


def test_qwen_image_layered_is_refused_clearly():
    """Qwen-Image-Layered holds several picture layers in one sequence: refused, naming the supported families."""
    import comfy.supported_models

    from concept_attention.concept_patch.checks.errors import UnsupportedModelError

    config = comfy.supported_models.QwenImage({
        "image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 2,
        "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": 64, "axes_dims_rope": (8, 12, 12),
        "use_additional_t_cond": True})
    config.set_inference_dtype(torch.float32, None)
    layered = tiny_models.patcher(config.get_model({}))
    with pytest.raises(UnsupportedModelError, match="Qwen-Image-Layered.*Supported: Flux.1"):
        install_concept_attention(layered, _concepts("qwen"), SaliencyOptions(layers=(0,)))


def test_qwen_image_encode_takes_a_four_dimensional_latent_as_the_samplers_do():
    """ComfyUI's Qwen-Image templates start from EmptySD3LatentImage ([B, 16, H, W]); the samplers add the frame
    axis, and so does encode mode: same maps as the [B, 16, 1, H, W] latent."""
    model = _qwen_model()
    latent = torch.randn(1, 16, 1, 6, 8, generator=torch.Generator().manual_seed(13))
    five, _ = _encode(model, "qwen", latent)
    four, _ = _encode(model, "qwen", latent[:, :, 0])
    assert torch.equal(five.maps, four.maps)


def test_concepts_without_positions_are_refused_clearly_on_qwen_image():
    """Qwen-Image places the concepts on its text diagonal: a CONCEPTS value without positions (built by other
    code) is refused by name, not an AttributeError from deep in the RoPE table."""
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError

    model = _qwen_model()
    latent = torch.randn(1, 16, 1, 6, 8, generator=torch.Generator().manual_seed(13))
    bare = dataclasses.replace(_concepts("qwen"), positions=None)
    with pytest.raises(ConceptAttentionError, match="places text tokens by position.*carry no positions"):
        _encode_with(model, "qwen", bare, latent)


def _encode_with(model, name, concepts, latent):
    from concept_attention.concept_patch.encode import encode_saliency

    clip = _clip(name)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass under the sky"))
    return encode_saliency(model, concepts, latent, SaliencyOptions(layers=(0, 2)), conditioning=cond)
