"""Runs keep their own maps; other patches, interrupts, LoRA and compiled models are handled."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError, UnsupportedModelError
from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_models


@pytest.fixture(scope="module")
def flux(comfyui_path):
    return tiny_models.flux_model(depth=4, single_depth=2)


@pytest.fixture(scope="module")
def concepts(flux_clip):
    return encode_concepts(flux_clip, ["dog", "grass", "sky"])


def _install(model, concepts, **kw):
    kw.setdefault("layers", (1, 2))
    return install_concept_attention(model, concepts, SaliencyOptions(**kw))


@dataclass
class Route:
    """A model on one of the two ways the concept stream gets into blocks: ComfyUI's dit hook (Flux) or the
    object-patched hook of models whose blocks ComfyUI calls directly (HiDream)."""

    model: object
    clip: object
    concepts: object
    dual_blocks: object
    single_blocks: object
    final_layer: object
    latent_shape: tuple = (1, 16, 6, 6)


@pytest.fixture(scope="module", params=["dit hook (Flux.1)", "object-patched hook (HiDream)"])
def route(request, flux, flux_clip, concepts):
    if request.param.startswith("dit"):
        dm = flux.model.diffusion_model
        return Route(flux, flux_clip, concepts, dm.double_blocks, dm.single_blocks, dm.final_layer)
    model = tiny_models.hidream_model(depth=4, single_depth=2)
    clip = tiny_models.hidream_clip()
    dm = model.model.diffusion_model
    return Route(model, clip, encode_concepts(clip, ["dog", "grass", "sky"]), dm.double_stream_blocks,
                 dm.single_stream_blocks, dm.final_layer)


def test_encode_mode_runs_no_block_after_the_last_selected(route):
    calls = []  # blocks entered (pre-hooks: the object-patched hook stops inside the last block's call)
    hooks = [b.register_forward_pre_hook(lambda m, i, n=f"double{k}": calls.append(n)) for k, b in enumerate(route.dual_blocks)]
    hooks += [b.register_forward_pre_hook(lambda m, i, n=f"single{k}": calls.append(n))
              for k, b in enumerate(route.single_blocks)]
    final = route.final_layer.register_forward_pre_hook(lambda m, i: calls.append("final"))
    try:
        saliency = encode_saliency(route.model, route.concepts, torch.randn(1, 16, 6, 6), SaliencyOptions(layers=(1,)))
    finally:
        for h in hooks + [final]:
            h.remove()
    assert calls == ["double0", "double1"]
    assert saliency.maps.shape == (1, 3, 3, 3)


def test_each_run_starts_fresh_and_two_samplers_keep_their_own_maps(route):
    patched, session = _install(route.model, route.concepts)
    a = sample(patched, route.clip, latent_shape=route.latent_shape, seed=1, cfg=1.0)
    maps_a = session.find_record(a).saliency.maps
    b = sample(patched, route.clip, latent_shape=route.latent_shape, seed=2, cfg=1.0)
    maps_b = session.find_record(b).saliency.maps
    assert not torch.equal(maps_a, maps_b)
    # the same run again gives the same maps: nothing carried over from earlier runs
    a_again = sample(patched, route.clip, latent_shape=route.latent_shape, seed=1, cfg=1.0)
    assert torch.equal(a, a_again)
    assert torch.equal(session.find_record(a_again).saliency.maps, maps_a)
    assert session.find_record(a).saliency.maps.sum(1).allclose(torch.ones(1, 3, 3))
    # a latent no run produced is not matched
    assert session.find_record(a + 1) is None
    # a second patch of the same model keeps its own maps
    other, other_session = _install(route.model, route.concepts, layers=(0,))
    c = sample(other, route.clip, latent_shape=route.latent_shape, seed=1, cfg=1.0)
    assert torch.equal(c, a) and other_session.find_record(c) is not None
    assert torch.equal(session.find_record(a).saliency.maps, maps_a)
    assert not torch.equal(other_session.find_record(c).saliency.maps, maps_a)


def test_interrupt_mid_run_leaves_models_usable_and_the_original_unpatched(route):
    import comfy.model_management

    model = route.model
    original_options = repr(model.model_options)
    original_object_patches = dict(model.object_patches)
    plain = sample(model, route.clip, latent_shape=route.latent_shape, seed=4, steps=4, cfg=1.0)
    patched, session = _install(model, route.concepts)

    def interrupt(step, x0, x, total):
        if step == 1:
            raise comfy.model_management.InterruptProcessingException()

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        sample(patched, route.clip, latent_shape=route.latent_shape, seed=4, steps=4, cfg=1.0, callback=interrupt)
    assert not session.records
    assert repr(model.model_options) == original_options
    assert model.object_patches == original_object_patches
    assert torch.equal(sample(model, route.clip, latent_shape=route.latent_shape, seed=4, steps=4, cfg=1.0), plain)
    again = sample(patched, route.clip, latent_shape=route.latent_shape, seed=4, steps=4, cfg=1.0)
    assert torch.equal(again, plain)
    assert session.find_record(again).saliency.metadata["model_calls_used"] == 4


def test_skip_layer_guidance_coexists(flux, flux_clip, concepts):
    from comfy_extras.nodes_slg import SkipLayerGuidanceDiT

    def slg(model):
        return SkipLayerGuidanceDiT.execute(model, scale=3.0, start_percent=0.0, end_percent=1.0,
                                            double_layers="1", single_layers="0").result[0]

    reference = sample(slg(flux), flux_clip, latent_shape=(1, 16, 6, 6), seed=5, steps=3, cfg=2.0)
    for order in ("slg_after", "slg_before"):
        if order == "slg_after":
            patched, session = _install(flux, concepts)
            model = slg(patched)
        else:
            model, session = _install(slg(flux), concepts)
        out = sample(model, flux_clip, latent_shape=(1, 16, 6, 6), seed=5, steps=3, cfg=2.0)
        assert torch.equal(out, reference), order
        meta = session.find_record(out).saliency.metadata
        # SLG's extra pass skips block 1's attention: that forward is dropped, the 3 real cond passes count
        assert meta["model_calls_used"] == 3 and meta["model_calls"] == 6, (order, meta)


def test_existing_replace_patch_and_attention_override_are_chained(flux, flux_clip, concepts):
    calls = {"block": 0, "attention": 0}

    def block_patch(args, extra):
        calls["block"] += 1
        out = extra["original_block"](args)
        out["img"] = out["img"] * 1.01
        return out

    def attention_override(func, *args, **kwargs):
        calls["attention"] += 1
        return func(*args, **kwargs)

    other = flux.clone()
    other.set_model_patch_replace(block_patch, "dit", "double_block", 1)
    other.model_options["transformer_options"]["optimized_attention_override"] = attention_override
    reference = sample(other, flux_clip, latent_shape=(1, 16, 6, 6), seed=6, cfg=1.0)
    counted = dict(calls)
    patched, session = _install(other, concepts)
    out = sample(patched, flux_clip, latent_shape=(1, 16, 6, 6), seed=6, cfg=1.0)
    assert torch.equal(out, reference)
    assert calls["block"] == 2 * counted["block"] and calls["attention"] == 2 * counted["attention"]
    assert session.find_record(out) is not None


def test_step_range_averages_only_the_chosen_steps(flux, flux_clip, concepts):
    def maps_for(start, end):
        patched, session = _install(flux, concepts, start_percent=start, end_percent=end)
        out = sample(patched, flux_clip, latent_shape=(1, 16, 6, 6), seed=8, steps=4, cfg=1.0)
        return session.find_record(out).saliency.maps

    third, fourth, both, every = maps_for(0.5, 0.75), maps_for(0.75, 1.0), maps_for(0.5, 1.0), maps_for(0.0, 1.0)
    torch.testing.assert_close(both, (third + fourth) / 2, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(both, every)


def test_lora_patched_text_stream_changes_maps_not_exactness(flux, flux_clip, concepts):
    lora = flux.clone()
    key = "diffusion_model.double_blocks.1.txt_attn.qkv.weight"
    weight = lora.get_model_object(key)
    lora.add_patches({key: (torch.randn(weight.shape, generator=torch.Generator().manual_seed(9)) * 0.5,)}, 1.0)
    plain = sample(lora, flux_clip, latent_shape=(1, 16, 6, 6), seed=10, cfg=1.0)
    patched, session = _install(lora, concepts)
    out = sample(patched, flux_clip, latent_shape=(1, 16, 6, 6), seed=10, cfg=1.0)
    assert torch.equal(out, plain)
    base, base_session = _install(flux, concepts)
    base_out = sample(base, flux_clip, latent_shape=(1, 16, 6, 6), seed=10, cfg=1.0)
    assert not torch.equal(session.find_record(out).saliency.maps, base_session.find_record(base_out).saliency.maps)


# Per family: a builder, its text encoder, and the text-stream modules of dual-stream block i (what the
# concepts run through), for a LoRA-like patch on them.
LOW_VRAM_CASES = {
    "Flux.1 (dit hook)": (lambda: tiny_models.flux_model(depth=4, single_depth=2, seed=21), "flux",
                          lambda i: [f"double_blocks.{i}.{n}" for n in ("txt_attn.qkv", "txt_mlp.0", "txt_mlp.2")]),
    "HiDream (object-patched hook)": (
        lambda: tiny_models.hidream_model(depth=4, single_depth=2, seed=21), "hidream",
        lambda i: [f"double_stream_blocks.{i}.block.{n}" for n in ("attn1.to_q_t", "attn1.to_k_t", "ff_t.w1", "ff_t.w2")]),
}


def _lora_on_text_stream(model, seed, text_modules):
    """A LoRA-like weight patch on every dual-stream block's text-stream modules."""
    g = torch.Generator().manual_seed(seed)
    patches = {}
    for i in range(4):
        for name in text_modules(i):
            key = f"diffusion_model.{name}.weight"
            patches[key] = (torch.randn(model.get_model_object(key).shape, generator=g) * 0.05,)
    patched = model.clone()
    patched.add_patches(patches, 1.0)
    return patched


@pytest.mark.parametrize("case", list(LOW_VRAM_CASES))
def test_partially_loaded_model_with_lora(case, flux_clip, monkeypatch):
    """Low-VRAM loading: ComfyUI loads what fits and casts the rest, LoRA included, at call time.
    On this CPU machine ComfyUI would always load fully, so every load gets almost no budget (the
    budget is what a load may add): the weights are cast at call time, the path a small GPU takes."""
    import comfy.model_management

    build, encoder, text_modules = LOW_VRAM_CASES[case]
    clip = flux_clip if encoder == "flux" else tiny_models.hidream_clip()
    concepts = encode_concepts(clip, ["dog", "grass", "sky"])
    full = _lora_on_text_stream(build(), 22, text_modules)
    full_plain = sample(full, clip, latent_shape=(1, 16, 6, 6), seed=12, cfg=1.0)
    full_patched, full_session = _install(full, concepts)
    full_out = sample(full_patched, clip, latent_shape=(1, 16, 6, 6), seed=12, cfg=1.0)
    full_maps = full_session.find_record(full_out).saliency.maps
    comfy.model_management.unload_all_models()

    model_load = comfy.model_management.LoadedModel.model_load

    def load_almost_nothing(self, lowvram_model_memory=0, force_patch_weights=False):
        return model_load(self, 1, force_patch_weights)

    monkeypatch.setattr(comfy.model_management.LoadedModel, "model_load", load_almost_nothing)
    low = _lora_on_text_stream(build(), 22, text_modules)
    modules = [low.get_model_object(f"diffusion_model.{name}") for i in range(4) for name in text_modules(i)]
    patched_at_call = []  # text-stream calls whose LoRA was applied at call time (partially loaded)
    hooks = [m.register_forward_pre_hook(lambda m, a: patched_at_call.append(bool(m.weight_function)))
             for m in modules]
    try:
        plain = sample(low, clip, latent_shape=(1, 16, 6, 6), seed=12, cfg=1.0)
        patched, session = _install(low, concepts)
        calls_before = len(patched_at_call)
        out = sample(patched, clip, latent_shape=(1, 16, 6, 6), seed=12, cfg=1.0)
        assert low.model.model_lowvram
        assert any(patched_at_call[calls_before:]), "no text-stream weight was patched at call time"
        assert torch.equal(out, plain)
        torch.testing.assert_close(out, full_plain, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(session.find_record(out).saliency.maps, full_maps, rtol=1e-5, atol=1e-6)
    finally:
        for h in hooks:
            h.remove()


def test_fp8_weights_with_manual_cast(flux_clip, concepts):
    model = tiny_models.flux_model(dtype=torch.float32)
    fp8 = model.clone()
    fp8.model.diffusion_model.double_blocks.to(torch.float8_e4m3fn)
    model_fp8 = tiny_models.flux_model(dtype=torch.float32)
    for block in model_fp8.model.diffusion_model.double_blocks:
        for mod in block.modules():
            if hasattr(mod, "comfy_cast_weights"):
                mod.comfy_cast_weights = True
        block.to(torch.float8_e4m3fn)
    plain = sample(model_fp8, flux_clip, latent_shape=(1, 16, 6, 6), seed=11, cfg=1.0)
    patched, session = _install(model_fp8, concepts)
    out = sample(patched, flux_clip, latent_shape=(1, 16, 6, 6), seed=11, cfg=1.0)
    assert torch.isfinite(plain).all() and torch.equal(out, plain)
    assert torch.isfinite(session.find_record(out).saliency.maps).all()


def test_torch_compile_is_refused_clearly(flux, flux_clip, concepts):
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    compiled = flux.clone()
    set_torch_compile_wrapper(compiled, backend="inductor")
    with pytest.raises(ConceptAttentionError, match="torch.compile"):
        _install(compiled, concepts)
    patched, _ = _install(flux, concepts)
    set_torch_compile_wrapper(patched, backend="inductor")
    with pytest.raises(ConceptAttentionError, match="torch.compile"):
        sample(patched, flux_clip, latent_shape=(1, 16, 6, 6), cfg=1.0)


def test_unsupported_models_name_the_supported_families(concepts, flux):
    import comfy.ldm.aura.mmdit

    aura = flux.clone()
    aura.add_object_patch("diffusion_model", comfy.ldm.aura.mmdit.MMDiT(
        dim=64, n_layers=2, n_double_layers=1, n_heads=2, max_seq=64, cond_seq_dim=64, operations=torch.nn))
    with pytest.raises(UnsupportedModelError, match="Flux.1 .* SD3/SD3.5"):
        _install(aura, concepts)


def test_cross_attention_and_single_stream_models_are_told_why():
    """PixArt reads text by cross-attention only and has no adapter (Wan does: tests/comfy/test_wan.py); OmniGen2
    shares every block's weights and has no shared-weight concept stream here (Z-Image, Lumina 2 and Krea 2 do):
    each error says so."""
    import comfy.ldm.omnigen.omnigen2
    import comfy.ldm.pixart.pixartms
    import comfy.ops

    from concept_attention.concept_patch.families import detect_family

    ops = comfy.ops.disable_weight_init
    pixart = comfy.ldm.pixart.pixartms.PixArtMS(input_size=8, hidden_size=64, depth=1, num_heads=2, caption_channels=32,
                                                operations=ops)
    omnigen = comfy.ldm.omnigen.omnigen2.OmniGen2Transformer2DModel(
        hidden_size=64, num_layers=1, num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1,
        axes_dim_rope=(8, 12, 12), axes_lens=(8, 8, 8), text_feat_dim=32, operations=ops)
    with pytest.raises(UnsupportedModelError, match="PixArtMS, a cross-attention model.*Supported: Flux.1"):
        detect_family(pixart)
    with pytest.raises(UnsupportedModelError, match="OmniGen2Transformer2DModel, a single-stream model.*Supported: Flux.1"):
        detect_family(omnigen)


def test_bad_options_and_encoder_mismatch(flux, sd3_clip, concepts):
    with pytest.raises(ConceptAttentionError, match="4 dual-stream blocks"):
        _install(flux, concepts, layers=(4,))
    sd3_concepts = encode_concepts(sd3_clip, ["dog"])
    with pytest.raises(ConceptAttentionError, match="SD3 CLIP-L/G .clip-lg states.* reads t5xxl"):
        _install(flux, sd3_concepts)
    from dataclasses import replace

    with pytest.raises(ConceptAttentionError, match="4096-wide"):
        _install(flux, replace(sd3_concepts, text_space=""))
    # same width, other family: SD3's CLIP states padded to the width Flux reads are still not T5 states
    from concept_attention.concept_patch.text.concepts import ConceptSet

    foreign = ConceptSet(["dog"], concepts.embeddings[:1], encoder="SD3 CLIP-L/G", text_space="clip-lg")
    with pytest.raises(ConceptAttentionError, match="clip-lg states.*Flux.1 model reads t5xxl"):
        _install(flux, foreign)
    with pytest.raises(ConceptAttentionError, match="step range"):
        SaliencyOptions(layers=(1,), start_percent=0.8, end_percent=0.2)
    with pytest.raises(ConceptAttentionError, match="space"):
        SaliencyOptions(layers=(1,), space="keys")
    with pytest.raises(ConceptAttentionError, match="noise level"):
        encode_saliency(flux, concepts, torch.randn(1, 16, 6, 6), SaliencyOptions(layers=(1,)), noise_level=0.0)
