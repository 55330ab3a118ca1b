"""The softmax's temperature and place: the authors' Flux.2 settings (layers 5-7 of its 8 dual-stream blocks, a
softmax over the concepts *after* the mean over layers and steps, at temperature 1000), on a tiny Flux.2-dev with
8 dual-stream blocks, against the independent fp64 implementation (references/reference_concept_attention.py)
evaluated raw and softmaxed here from the equations; re-queries give the very maps of a full run; generation mode
softmaxes the mean over steps."""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention_tests.comfy.model_inputs import Setup, recorded_inputs
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.references import reference_concept_attention as ref
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.test_flux_variants_match_reference import concept_positions
from concept_attention_tests.comfy.tiny import tiny_models, tiny_text_encoders

CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog on the grass under the sky"
AUTHORS_LAYERS = (5, 6, 7)  # their Flux.2 default: the last 3 of 8 dual-stream blocks
RTOL, ATOL = 1e-5, 3e-6     # the fp32 floor of these tiny models (test_flux_variants_match_reference.py)
BUDGET = 64 << 20


@functools.cache
def setup() -> Setup:
    from concept_attention.concept_patch.text.encoding import encode_concepts

    clip = tiny_text_encoders.flux2_dev_clip()
    concepts = encode_concepts(clip, CONCEPTS, pooling="first")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    latent = torch.randn((2, 128, 4, 5), generator=torch.Generator().manual_seed(11))
    model = tiny_models.flux2_model("dev", depth=8, seed=31)
    return Setup("flux2_dev", model, clip, concepts, cond, AUTHORS_LAYERS, latent)


_module_scope = cleared_after_module(setup, one_thread=True)


@pytest.fixture(autouse=True)
def _empty_cache():
    from concept_attention.concept_patch.requery import cache

    cache.CACHE.clear()
    yield
    cache.CACHE.clear()


def options(**kw):
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    kw.setdefault("layers", AUTHORS_LAYERS)
    return SaliencyOptions(**kw)


def encode(s: Setup, budget=0, **kw):
    from concept_attention.concept_patch.encode import encode_saliency

    with recorded_inputs(s.dm) as calls:
        sal = encode_saliency(s.model, s.concepts, s.latent, options(**kw), conditioning=s.cond, noise_level=0.5,
                              seed=0, cache_budget=budget)
    return sal, calls


def raw_layer_scores(s: Setup, call) -> dict:
    """fp64 per-layer raw scores [B, n, r] of the reference (no softmax anywhere)."""
    result = ref.flux2_reference(s.dm, call.x, call.timestep, call.context, call.guidance, s.concepts.embeddings,
                                 concept_positions(s), AUTHORS_LAYERS, space="output", softmax=False)
    return result, {i: result.layer_scores[i] for i in AUTHORS_LAYERS}


def as_maps(scores: torch.Tensor, result) -> torch.Tensor:
    """[B, n, r] -> [B, r, h, w]."""
    h, w = result.grid
    return scores.reshape(scores.shape[0], h, w, -1).permute(0, 3, 1, 2)


def assert_close(product, expected, what):
    assert product.dtype == torch.float32 and tuple(product.shape) == tuple(expected.shape)
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    bad = diff > atol + RTOL * expected.abs()
    assert not bad.any(), f"{what}: max |product - reference| = {diff.max():.3e} at {int(bad.sum())} entries"


@pytest.mark.parametrize("temperature", [1000.0, 1.0, 0.05])
def test_softmax_after_the_layer_mean_matches_reference(temperature):
    """The authors' Flux.2 maps: softmax over concepts of mean-over-layers raw scores / temperature."""
    s = setup()
    sal, calls = encode(s, softmax_after_mean=True, softmax_temperature=temperature)
    result, layers = raw_layer_scores(s, calls[0])
    mean = sum(layers.values()) / len(layers)
    expected = as_maps((mean / temperature).softmax(dim=-1), result)
    assert_close(sal.maps, expected, f"softmax after mean, T={temperature}")
    assert sal.softmax is True
    torch.testing.assert_close(sal.maps.sum(dim=1), torch.ones_like(sal.maps[:, 0]))
    assert sal.metadata["softmax_after_mean"] is True
    assert sal.metadata.get("softmax_temperature", 1.0) == temperature
    # the product's own raw maps, softmaxed outside it: the same maps (the authors' code applied to the pack)
    raw, _ = encode(s, softmax=False)
    outside = (raw.maps.double() / temperature).softmax(dim=1)
    assert (sal.maps.double() - outside).abs().max() < 1e-6


@pytest.mark.parametrize("temperature", [1000.0, 0.05])
def test_per_layer_softmax_at_a_temperature_matches_reference(temperature):
    s = setup()
    sal, calls = encode(s, softmax_temperature=temperature)
    result, layers = raw_layer_scores(s, calls[0])
    expected = sum((scores / temperature).softmax(dim=-1) for scores in layers.values()) / len(layers)
    assert_close(sal.maps, as_maps(expected, result), f"per-layer softmax, T={temperature}")
    assert "softmax_after_mean" not in sal.metadata


def test_the_settings_change_the_maps_and_default_is_the_papers():
    """Not a no-op: each setting moves the maps; temperature 1 per layer is bit for bit the paper's softmax."""
    s = setup()
    paper, _ = encode(s)
    assert torch.equal(encode(s, softmax_temperature=1.0)[0].maps, paper.maps)
    after, _ = encode(s, softmax_after_mean=True)
    hot, _ = encode(s, softmax_temperature=0.05)
    assert (after.maps - paper.maps).abs().max() > 1e-3
    assert (hot.maps - paper.maps).abs().max() > 1e-3
    # with softmax off, neither applies: the raw mean
    raw, _ = encode(s, softmax=False)
    assert torch.equal(encode(s, softmax=False, softmax_after_mean=True, softmax_temperature=1000.0)[0].maps,
                       raw.maps)


def test_requery_with_the_authors_settings_equals_a_full_run():
    s = setup()
    first, calls = encode(s, budget=BUDGET)
    assert first.metadata["requery"] is False and calls
    authors = dict(softmax_after_mean=True, softmax_temperature=1000.0)
    again, calls = encode(s, budget=BUDGET, **authors)
    assert again.metadata["requery"] is True and not calls, "changing the softmax ran the model again"
    fresh, _ = encode(s, budget=0, **authors)
    assert fresh.metadata["requery"] is False
    assert torch.equal(again.maps, fresh.maps)
    per_layer, _ = encode(s, budget=BUDGET, softmax_temperature=0.05)
    assert per_layer.metadata["requery"] is True
    assert torch.equal(per_layer.maps, encode(s, budget=0, softmax_temperature=0.05)[0].maps)


def test_generation_softmaxes_the_mean_over_steps():
    """Generation mode: the softmax comes after the mean over layers and steps; the picture is unchanged."""
    from concept_attention.concept_patch.generation import install_concept_attention

    s = setup()
    plain = sample(s.model, s.clip, latent_shape=(1, 128, 4, 5), steps=3, prompt=PROMPT)
    raw_model, raw_session = install_concept_attention(s.model, s.concepts, options(softmax=False))
    raw_latent = sample(raw_model, s.clip, latent_shape=(1, 128, 4, 5), steps=3, prompt=PROMPT)
    model, session = install_concept_attention(
        s.model, s.concepts, options(softmax_after_mean=True, softmax_temperature=1000.0))
    latent = sample(model, s.clip, latent_shape=(1, 128, 4, 5), steps=3, prompt=PROMPT)
    assert torch.equal(latent, plain) and torch.equal(raw_latent, plain)
    raw = raw_session.find_record(raw_latent).saliency
    maps = session.find_record(latent).saliency
    expected = (raw.maps.double() / 1000.0).softmax(dim=1)
    assert (maps.maps.double() - expected).abs().max() < 1e-6
    assert maps.metadata["softmax_after_mean"] is True


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_temperature_is_refused(bad):
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError

    with pytest.raises(ConceptAttentionError, match="softmax_temperature"):
        options(softmax_temperature=bad)
