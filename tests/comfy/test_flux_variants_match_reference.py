"""Flux.2 (dev, Klein), LongCat-Image, Ovis-Image and Chroma Radiance: the product's maps equal the
independent fp64 implementation of the method (tests/comfy/references/reference_concept_attention.py), concept
RoPE included; concepts come from each family's real ComfyUI text encoder (tiny configs).

Concept positions fed to the reference: each concept's own tokens' place in its own conditioning
(ConceptSet.positions, checked against the tokenizers' character offsets in
test_concept_encoding_llm.py), laid out as the model lays out a prompt holding only the concept:
ComfyUI's own `extra_conds` pads Flux.2 text on the left, which shifts every text position.
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention_tests.comfy.model_inputs import Setup, recorded_inputs
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.references import reference_concept_attention as ref
from concept_attention_tests.comfy.tiny import tiny_models, tiny_text_encoders

CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog on the grass under the sky"
RTOL, ATOL = 1e-5, 3e-6  # the fp32 floor of these tiny models, as for Flux.1 (test_maps_match_reference.py)


BUILDERS = {
    # name: (model, text encoder, layers, latent shape)
    "flux2_dev": (lambda: tiny_models.flux2_model("dev", seed=21), tiny_text_encoders.flux2_dev_clip, (0, 2), (2, 128, 4, 5)),
    "klein_4b": (lambda: tiny_models.flux2_model("klein4b", seed=22), lambda: tiny_text_encoders.klein_clip("4b"),
                 (1, 2), (2, 128, 5, 3)),
    "klein_8b": (lambda: tiny_models.flux2_model("klein8b", seed=23), lambda: tiny_text_encoders.klein_clip("8b"),
                 (2,), (1, 128, 3, 3)),
    "longcat": (lambda: tiny_models.longcat_model(seed=24), tiny_text_encoders.longcat_clip, (0, 2), (2, 16, 7, 10)),
    "ovis": (lambda: tiny_models.ovis_model(seed=25), tiny_text_encoders.ovis_clip, (0, 2), (2, 16, 7, 10)),
    # 36 pixels: ceil(36/16) = 3 token rows (Flux's rounding would give 2)
    "radiance": (lambda: tiny_models.chroma_radiance_model(seed=26), tiny_models.flux_clip, (0, 2), (2, 3, 36, 72)),
    "radiance_sequential": (lambda: tiny_models.chroma_radiance_model(seed=27, sequential_txt_ids=True),
                            tiny_models.flux_clip, (0, 2), (2, 3, 36, 72)),
}


FAMILY_NAMES = {"flux2": "Flux.2", "klein": "Flux.2", "longcat": "LongCat-Image", "ovis": "Ovis-Image",
                "radiance": "Chroma Radiance"}


@functools.cache
def _clip(name):
    return BUILDERS[name][1]()


@functools.cache
def setup_for(name: str) -> Setup:
    from concept_attention.concept_patch.text.encoding import encode_concepts

    build_model, _, layers, latent_shape = BUILDERS[name]
    clip = _clip(name)
    concepts = encode_concepts(clip, CONCEPTS, pooling="mean")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    latent = torch.randn(latent_shape, generator=torch.Generator().manual_seed(11))
    return Setup(name, build_model(), clip, concepts, cond, layers, latent)


_module_scope = cleared_after_module(setup_for, _clip, one_thread=True)


def concept_positions(setup: Setup) -> torch.Tensor:
    """Where the model would put each concept's own tokens in a prompt holding only that concept: its index
    in its own conditioning, shifted as ComfyUI's extra_conds lays that conditioning out for this model."""
    shifts = []
    for i in range(len(CONCEPTS)):
        length = int(setup.concepts.cond_lengths[i])
        laid_out = setup.model.model.extra_conds(cross_attn=torch.zeros(1, length, 1))["c_crossattn"].cond
        shifts.append(laid_out.shape[1] - length)  # left padding (a right pad shifts nothing)
    return setup.concepts.positions.double() + torch.tensor(shifts, dtype=torch.float64)


def encode(setup: Setup, **option_kw):
    from concept_attention.concept_patch.encode import encode_saliency
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    option_kw.setdefault("layers", setup.layers)
    with recorded_inputs(setup.dm) as calls:
        sal = encode_saliency(setup.model, setup.concepts, setup.latent, SaliencyOptions(**option_kw),
                              conditioning=setup.cond, noise_level=0.5, seed=0)
    assert len(calls) == 1
    return sal, calls[0]


def reference(setup: Setup, call, space="output", softmax=True, switches=(True, True), dtype=torch.float64,
              deviation=None, positions=None):
    sw = ref.ConceptSwitches(self_attention=switches[0], cross_attention=switches[1])
    emb = setup.concepts.embeddings
    positions = concept_positions(setup) if positions is None else positions
    kw = dict(space=space, softmax=softmax, switches=sw, dtype=dtype, deviation=deviation)
    if setup.name.startswith(("flux2", "klein")):
        return ref.flux2_reference(setup.dm, call.x, call.timestep, call.context, call.guidance, emb, positions,
                                   setup.layers, **kw)
    if setup.name.startswith("radiance"):
        return ref.chroma_reference(setup.dm, call.x, call.timestep, call.context, call.guidance, emb, setup.layers,
                                    concept_positions=positions, sequential_text_ids=setup.name.endswith("sequential"),
                                    **kw)
    T = call.context.shape[1]
    # LongCat's _apply_model puts the image after the prompt: index 1, rows and columns shifted by T.
    offset = (1.0, float(T), float(T)) if setup.name == "longcat" else (0.0, 0.0, 0.0)
    return ref.flux_reference(setup.dm, call.x, call.timestep, call.context, call.y, call.guidance, emb, setup.layers,
                              concept_positions=positions, image_id_offset=offset, **kw)


def assert_maps_match(product, expected, what):
    assert product.dtype == torch.float32
    assert tuple(product.shape) == tuple(expected.shape), (tuple(product.shape), tuple(expected.shape))
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    bad = diff > atol + RTOL * expected.abs()
    assert not bad.any(), (f"{what}: maps differ from the reference at {int(bad.sum())}/{bad.numel()} entries, "
                           f"max |product - reference| = {diff.max():.3e} (atol {atol:.1e})")


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_maps_match_reference(name, space, softmax):
    s = setup_for(name)
    sal, call = encode(s, space=space, softmax=softmax)
    assert sal.metadata["model_family"] == FAMILY_NAMES[name.split("_")[0]]
    assert_maps_match(sal.maps, reference(s, call, space=space, softmax=softmax).maps, f"{name} {space} softmax={softmax}")


@pytest.mark.parametrize("name", ["klein_4b", "longcat"])
def test_table4_switches_match_reference(name):
    s = setup_for(name)
    for switches in [(False, True), (True, False), (False, False)]:
        sal, call = encode(s, concept_self_attention=switches[0], concept_cross_attention=switches[1])
        assert_maps_match(sal.maps, reference(s, call, switches=switches).maps, f"{name} switches {switches}")


def test_the_grids():
    """Flux.2 reads 16x latents at patch 1; Chroma Radiance pads pixels up to whole 16-pixel patches."""
    assert setup_for("klein_4b").latent.shape[-2:] == (5, 3)
    assert encode(setup_for("klein_4b"))[0].grid == (5, 3)
    assert encode(setup_for("radiance"))[0].grid == (3, 5)  # 36 x 72 pixels


def test_flux2_dev_concepts_sit_where_left_padded_text_sits():
    """dev's Mistral prompts are padded on the left to 512 tokens: a concept's position is near the end."""
    positions = concept_positions(setup_for("flux2_dev"))
    assert (positions > 480).all() and (positions < 512).all(), positions
    klein = concept_positions(setup_for("klein_4b"))  # Klein's tokenizer pads on the right: no shift
    assert torch.equal(klein, setup_for("klein_4b").concepts.positions.double())


MISTAKES = [("flux2_dev", d) for d in ref.FLUX2_DEVIATIONS] + [("klein_4b", "unrotated_concepts")] + [
    ("longcat", "unrotated_concepts"), ("ovis", "unrotated_concepts"), ("ovis", "pooled_concept_modulation"),
    ("radiance_sequential", "ungated_concept_update")]


@pytest.mark.parametrize("name,deviation", MISTAKES)
def test_comparison_catches_plausible_mistakes(name, deviation):
    """One plausible mistake in the reference (concepts without RoPE, the image modulation, ungated updates)
    moves the maps far outside the tolerance, so the matches above pin these details down."""
    s = setup_for(name)
    sal, call = encode(s)
    if deviation == "pooled_concept_modulation":  # Ovis has no pooled vector: nothing to leave out, same maps
        assert_maps_match(sal.maps, reference(s, call, deviation=deviation).maps, "no pooled vector")
        return
    wrong = reference(s, call, deviation=deviation).maps
    assert (sal.maps.double() - wrong).abs().max() > 100 * ATOL


@pytest.mark.parametrize("name", ["flux2_dev", "longcat", "radiance_sequential"])
def test_a_concept_at_another_position_gives_other_maps(name):
    """The concept position is part of the method here: the same concepts one position later change the maps."""
    s = setup_for(name)
    sal, call = encode(s)
    moved = reference(s, call, positions=concept_positions(s) + 1.0).maps
    assert (sal.maps.double() - moved).abs().max() > 100 * ATOL


@pytest.mark.parametrize("concept_from,model_of,expected", [
    ("klein_4b", "flux2_dev", r"48-wide.*Qwen3 4B.*96-wide"),     # Klein concepts on dev: widths differ
    ("flux2_dev", "klein_4b", r"96-wide.*48-wide"),
    ("longcat", "ovis", r"qwen25_7b.*Ovis-Image.*qwen3_2b"),       # another model's encoder
    ("radiance", "klein_4b", r"t5xxl.*Flux.2 model reads"),
])
def test_concepts_from_another_models_encoder_are_refused(concept_from, model_of, expected):
    """The error names both sides (what the concepts were encoded with, what the model reads); the model stays usable."""
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError

    wrong = setup_for(concept_from).concepts
    s = setup_for(model_of)
    from concept_attention.concept_patch.encode import encode_saliency
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    with pytest.raises(ConceptAttentionError, match=expected):
        encode_saliency(s.model, wrong, s.latent, SaliencyOptions(layers=s.layers), conditioning=s.cond)
    assert encode(s)[0].maps.shape[1] == len(CONCEPTS)
