"""The generated image does not change by a single bit with ConceptAttention installed."""

from __future__ import annotations

import pytest
import torch

from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_models

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _patched(model, clip, layers):
    concepts = encode_concepts(clip, ["dog", "grass", "blue sky"])
    return install_concept_attention(model, concepts, SaliencyOptions(layers=layers))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("family, build", [("Flux.1", tiny_models.flux_model), ("Chroma", tiny_models.chroma_model)])
def test_flux_and_chroma_output_bit_identical(dtype, family, build, flux_clip):
    model = build(dtype=dtype)
    # batch 2, cond + uncond (cfg > 1), non-square latent
    plain = sample(model, flux_clip, latent_shape=(2, 16, 6, 10), cfg=3.0)
    patched, session = _patched(model, flux_clip, (0, 1, 2))
    out = sample(patched, flux_clip, latent_shape=(2, 16, 6, 10), cfg=3.0)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    saliency = session.records[-1].saliency
    assert saliency.maps.shape == (2, 3, 3, 5) and saliency.metadata["model_family"] == family
    torch.testing.assert_close(saliency.maps.sum(1), torch.ones(2, 3, 5))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_flux_kontext_reference_latent_bit_identical(dtype, flux_clip):
    model = tiny_models.flux_model(dtype=dtype)
    reference = [torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(3))]
    plain = sample(model, flux_clip, latent_shape=(1, 16, 6, 8), cfg=1.0, reference_latents=reference)
    patched, session = _patched(model, flux_clip, (1, 2))
    out = sample(patched, flux_clip, latent_shape=(1, 16, 6, 8), cfg=1.0, reference_latents=reference)
    assert torch.equal(plain, out)
    # maps cover the main image's 3x4 tokens only, not the 2x2 reference tokens
    assert session.records[-1].saliency.maps.shape == (1, 3, 3, 4)


def test_flux_fill_and_schnell_bit_identical(flux_clip):
    for model in (tiny_models.flux_model(guidance=False), tiny_models.flux_model(fill=True)):
        kwargs = {}
        if model.model.diffusion_model.params.in_channels == 96:  # Fill: inpaint image + mask channels
            kwargs = {"concat_latent_image": torch.zeros(1, 16, 6, 6), "concat_mask": torch.ones(1, 1, 48, 48)}
        plain = sample(model, flux_clip, latent_shape=(1, 16, 6, 6), cfg=1.0, **kwargs)
        patched, session = _patched(model, flux_clip, (2,))
        assert torch.equal(plain, sample(patched, flux_clip, latent_shape=(1, 16, 6, 6), cfg=1.0, **kwargs))
        assert session.records


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", ["sd3", "sd35_mmditx"])
def test_sd3_output_bit_identical(dtype, variant, sd3_clip):
    mmdit_x = (0, 1) if variant == "sd35_mmditx" else ()
    model = tiny_models.sd3_model(dtype=dtype, mmdit_x_layers=mmdit_x)
    plain = sample(model, sd3_clip, latent_shape=(2, 16, 6, 10), cfg=4.5)
    # every block including the last, pre_only one
    patched, session = _patched(model, sd3_clip, (0, 1, 2))
    out = sample(patched, sd3_clip, latent_shape=(2, 16, 6, 10), cfg=4.5)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    assert session.records[-1].saliency.maps.shape == (2, 3, 3, 5)



NEW_FLUX_VARIANTS = {
    # family: (model builder, text encoder, latent shape (batch 2, non-square))
    "Flux.2 dev": (lambda d: tiny_models.flux2_model("dev", dtype=d), "flux2_dev", (2, 128, 3, 5)),
    "Flux.2 Klein 4B": (lambda d: tiny_models.flux2_model("klein4b", dtype=d), "klein_4b", (2, 128, 4, 3)),
    "Flux.2 Klein 9B": (lambda d: tiny_models.flux2_model("klein8b", dtype=d), "klein_8b", (2, 128, 3, 5)),
    "LongCat-Image": (lambda d: tiny_models.longcat_model(dtype=d), "longcat", (2, 16, 6, 10)),
    "Ovis-Image": (lambda d: tiny_models.ovis_model(dtype=d), "ovis", (2, 16, 6, 10)),
    "Chroma Radiance": (lambda d: tiny_models.chroma_radiance_model(dtype=d), "flux", (2, 3, 36, 72)),
    "Chroma Radiance, sequential text ids": (
        lambda d: tiny_models.chroma_radiance_model(dtype=d, sequential_txt_ids=True), "flux", (2, 3, 40, 24)),
}


def _text_encoder(name):
    from concept_attention_tests.comfy.tiny import tiny_text_encoders

    builders = {"flux2_dev": tiny_text_encoders.flux2_dev_clip, "klein_4b": lambda: tiny_text_encoders.klein_clip("4b"),
                "klein_8b": lambda: tiny_text_encoders.klein_clip("8b"), "longcat": tiny_text_encoders.longcat_clip,
                "ovis": tiny_text_encoders.ovis_clip, "flux": tiny_models.flux_clip}
    if name not in _ENCODERS:
        _ENCODERS[name] = builders[name]()
    return _ENCODERS[name]


_ENCODERS: dict = {}


@pytest.fixture(autouse=True, scope="module")
def _drop_encoders():
    yield
    _ENCODERS.clear()
    import gc

    gc.collect()  # while ComfyUI is importable: ModelPatchers detach on deletion


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", list(NEW_FLUX_VARIANTS))
def test_flux_variants_output_bit_identical(variant, dtype):
    build, encoder, shape = NEW_FLUX_VARIANTS[variant]
    clip = _text_encoder(encoder)
    model = build(dtype)
    # batch 2, cond + uncond (cfg > 1), non-square
    plain = sample(model, clip, latent_shape=shape, cfg=3.0)
    patched, session = _patched(model, clip, (0, 1, 2))
    out = sample(patched, clip, latent_shape=shape, cfg=3.0)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    saliency = session.records[-1].saliency
    grid = session.family.token_grid(model.model.diffusion_model, shape[-2:])
    assert saliency.maps.shape == (2, 3, *grid)
    assert variant.startswith(saliency.metadata["model_family"])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method", ["index", "index_timestep_zero"])
def test_flux2_reference_image_edit_bit_identical(method, dtype):
    """Flux.2 edits: reference latents after the image (index 10 on RoPE axis 0); with index_timestep_zero
    their rows get the modulation of timestep 0, while text keeps the picture's."""
    clip = _text_encoder("klein_4b")
    model = tiny_models.flux2_model("klein4b", dtype=dtype)
    refs = [torch.randn(1, 128, 2, 3, generator=torch.Generator().manual_seed(3))]
    kwargs = dict(latent_shape=(1, 128, 3, 4), cfg=2.0, reference_latents=refs, reference_latents_method=method)
    plain = sample(model, clip, **kwargs)
    patched, session = _patched(model, clip, (1, 2))
    out = sample(patched, clip, **kwargs)
    assert torch.equal(plain, out)
    # the maps cover the 3x4 picture tokens only, not the 2x3 reference tokens
    assert session.records[-1].saliency.maps.shape == (1, 3, 3, 4)
    if method == "index_timestep_zero":  # the method reached the model: another prediction than plain "index"
        other = sample(model, clip, **{**kwargs, "reference_latents_method": "index"})
        assert not torch.equal(plain, other)
