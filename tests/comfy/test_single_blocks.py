"""Single-stream blocks of hybrid models as selectable layers (an extension beyond the paper).

Maps over single-stream layers equal an independent fp64 implementation of the shared-weight equations
(reference_single_blocks.py) on Flux.1, Chroma, Flux.2 and HiDream; the default (dual-stream layers only) installs no
single-block patch and its maps are those of the dual-stream blocks, exactly; the picture is bit-identical with
single layers selected; encode mode stops after the last selected single block, and a re-query gives the maps
of a full run.
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention_tests.comfy.model_inputs import recorded_inputs
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.references import reference_single_blocks as single_ref
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_models, tiny_text_encoders

CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog on the grass under the sky"
RTOL, ATOL = 1e-5, 3e-6  # the fp32 floor of these tiny models (as in test_maps_match_reference.py)

BUILDERS = {
    # name: (model, text encoder, latent shape)
    "Flux.1": (lambda dtype=torch.float32: tiny_models.flux_model(dtype=dtype, depth=2, single_depth=3, seed=31),
               tiny_models.flux_clip, (2, 16, 6, 10)),
    "Chroma": (lambda dtype=torch.float32: tiny_models.chroma_model(dtype=dtype, depth=2, single_depth=3, seed=32),
               tiny_models.flux_clip, (2, 16, 6, 10)),
    "Flux.2 Klein": (lambda dtype=torch.float32: tiny_models.flux2_model("klein4b", dtype=dtype, depth=2,
                                                                         single_depth=3, seed=33),
                     lambda: tiny_text_encoders.klein_clip("4b"), (2, 128, 3, 5)),
    "Chroma Radiance": (lambda dtype=torch.float32: tiny_models.chroma_radiance_model(dtype=dtype, depth=2,
                                                                                      single_depth=3, seed=38),
                        tiny_models.flux_clip, (2, 3, 36, 72)),
    # text numbered on RoPE axes 1 and 2; Ovis' SwiGLU ("yak") MLPs
    "LongCat-Image": (lambda dtype=torch.float32: tiny_models.longcat_model(dtype=dtype, depth=2, single_depth=3,
                                                                            seed=36),
                      tiny_text_encoders.longcat_clip, (2, 16, 6, 10)),
    "Ovis-Image": (lambda dtype=torch.float32: tiny_models.ovis_model(dtype=dtype, depth=2, single_depth=3, seed=37),
                   tiny_text_encoders.ovis_clip, (2, 16, 6, 10)),
}


@functools.cache
def _clip(name):
    return BUILDERS[name][1]()


@functools.cache
def _setup(name):
    from concept_attention.concept_patch.text.encoding import encode_concepts

    build, _, shape = BUILDERS[name]
    clip = _clip(name)
    concepts = encode_concepts(clip, CONCEPTS, pooling="mean")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(13))
    return build(), clip, concepts, cond, latent


def _options(layers=(), single_layers=(), **kw):
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    return SaliencyOptions(layers=tuple(layers), single_layers=tuple(single_layers), **kw)


def _encode(name, layers, single_layers, budget=0, concepts=None, **kw):
    from concept_attention.concept_patch.encode import encode_saliency

    model, _, default_concepts, cond, latent = _setup(name)
    with recorded_inputs(model.model.diffusion_model) as calls:
        sal = encode_saliency(model, concepts or default_concepts, latent, _options(layers, single_layers, **kw),
                              conditioning=cond, noise_level=0.5, seed=0, cache_budget=budget)
    return sal, calls


def _concept_positions(model, concepts):
    """Flux.2: each concept's place in its own conditioning, shifted by the left padding extra_conds gives it."""
    shifts = []
    for i in range(len(CONCEPTS)):
        length = int(concepts.cond_lengths[i])
        laid_out = model.model.extra_conds(cross_attn=torch.zeros(1, length, 1))["c_crossattn"].cond
        shifts.append(laid_out.shape[1] - length)
    return concepts.positions.double() + torch.tensor(shifts, dtype=torch.float64)


def _reference(name, call, layers, single_layers, deviation=None, **kw):
    model, _, concepts, _, _ = _setup(name)
    dm, emb = model.model.diffusion_model, concepts.embeddings
    if name == "Flux.1":
        return single_ref.flux_single_reference(dm, call.x, call.timestep, call.context, call.y, call.guidance, emb,
                                                layers, single_layers, deviation=deviation, **kw)
    if name in ("Chroma", "Chroma Radiance"):
        return single_ref.chroma_single_reference(dm, call.x, call.timestep, call.context, call.guidance, emb, layers,
                                                  single_layers, deviation=deviation, **kw)
    if name in ("LongCat-Image", "Ovis-Image"):
        T = call.context.shape[1]
        # LongCat's _apply_model puts the image after the prompt: index 1, rows and columns shifted by T.
        offset = (1.0, float(T), float(T)) if name == "LongCat-Image" else (0.0, 0.0, 0.0)
        return single_ref.flux_single_reference(dm, call.x, call.timestep, call.context, call.y, call.guidance, emb,
                                                layers, single_layers, deviation=deviation,
                                                concept_positions=concepts.positions.double(), image_id_offset=offset,
                                                **kw)
    return single_ref.flux2_single_reference(dm, call.x, call.timestep, call.context, call.guidance, emb,
                                             _concept_positions(model, concepts), layers, single_layers,
                                             deviation=deviation, **kw)


def _max_error(product, expected):
    assert tuple(product.shape) == tuple(expected.shape), (tuple(product.shape), tuple(expected.shape))
    return float(((product.double() - expected).abs() - RTOL * expected.abs()).max())


def _atol(expected):
    return ATOL * max(1.0, float(expected.abs().max()))


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("layers, single_layers, space", [
    ((1,), (0, 2), "output"),   # dual and single layers together
    ((), (1,), "output"),       # single layers only: the stream still runs every dual block
    ((0,), (2,), "cross_attention"),
    ((), (0, 2), "value"),
])
def test_single_layer_maps_match_the_fp64_reference(name, layers, single_layers, space):
    sal, calls = _encode(name, layers, single_layers, space=space)
    assert len(calls) == 1
    expected = _reference(name, calls[0], layers, single_layers, space=space)
    assert _max_error(sal.maps, expected) <= _atol(expected)
    assert sal.metadata["single_layers"] == list(single_layers) and sal.metadata["layers"] == list(layers)


@pytest.mark.parametrize("name, deviation", [
    ("Flux.1", "zeroed_pooled_modulation"), ("Flux.1", "sequential_mlp"), ("Flux.1", "ungated_concept_update"),
    ("Chroma", "sequential_mlp"), ("Flux.2 Klein", "ungated_concept_update"),
])
def test_the_comparison_tells_plausible_mistakes_apart(name, deviation):
    sal, calls = _encode(name, (), (0, 2))
    wrong = _reference(name, calls[0], (), (0, 2), deviation=deviation)
    assert _max_error(sal.maps, wrong) > 100 * _atol(wrong), deviation


def _dit_patch_keys(model):
    return sorted(model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {}))


def test_default_installs_no_single_block_patch():
    from concept_attention.concept_patch.generation import install_concept_attention

    model, _, concepts, _, _ = _setup("Flux.1")
    patched, _ = install_concept_attention(model, concepts, _options((0, 1)))
    assert _dit_patch_keys(patched) == [("double_block", 0), ("double_block", 1)]
    patched, _ = install_concept_attention(model, concepts, _options((0,)))
    assert _dit_patch_keys(patched) == [("double_block", 0)]
    # single layers: every dual block, then the single blocks up to the last selected one
    patched, _ = install_concept_attention(model, concepts, _options((0,), (1,)))
    assert _dit_patch_keys(patched) == [("double_block", 0), ("double_block", 1), ("single_block", 0),
                                        ("single_block", 1)]


def test_dual_stream_layer_maps_are_unchanged_by_the_option(monkeypatch):
    """The per-layer maps of the dual-stream blocks are the same tensors with and without single layers."""
    from concept_attention.concept_patch.stream.forward_state import ForwardState

    seen = []
    original = ForwardState.add_layer_scores

    def spy(self, scores):
        seen.append(scores.clone())
        return original(self, scores)

    monkeypatch.setattr(ForwardState, "add_layer_scores", spy)
    without, _ = _encode("Flux.1", (0, 1), ())
    off = list(seen)
    seen.clear()
    with_single, _ = _encode("Flux.1", (0, 1), (2,))
    assert len(off) == 2 and len(seen) == 3
    assert all(torch.equal(a, b) for a, b in zip(off, seen[:2]))
    assert not torch.equal(without.maps, with_single.maps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_picture_bit_identical_with_single_layers(name, dtype):
    from concept_attention.concept_patch.generation import install_concept_attention
    from concept_attention.concept_patch.text.encoding import encode_concepts

    build, _, shape = BUILDERS[name]
    clip = _clip(name)
    model = build(dtype)
    plain = sample(model, clip, latent_shape=shape, cfg=3.0, steps=2)
    concepts = encode_concepts(clip, CONCEPTS)
    patched, session = install_concept_attention(model, concepts, _options((1,), (0, 2)))
    out = sample(patched, clip, latent_shape=shape, cfg=3.0, steps=2)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    saliency = session.records[-1].saliency
    assert saliency is not None and saliency.metadata["model_calls_used"] == 2
    torch.testing.assert_close(saliency.maps.sum(1), torch.ones(saliency.maps.shape[0], *saliency.maps.shape[2:]))


def test_encode_mode_stops_after_the_last_selected_single_block():
    model, *_ = _setup("Flux.1")
    dm = model.model.diffusion_model
    calls = {i: 0 for i in range(len(dm.single_blocks))}
    handles = [blk.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, blk in enumerate(dm.single_blocks)]
    try:
        _encode("Flux.1", (1,), (1,))
    finally:
        for h in handles:
            h.remove()
    assert calls == {0: 1, 1: 1, 2: 0}


def test_encode_mode_maps_equal_a_full_forward_over_single_layers():
    """Encode mode (stopping after the last selected block) reads the same maps as a forward that runs to the end."""
    import comfy.sample
    import comfy.samplers

    from concept_attention.concept_patch.encode import _one_model_call
    from concept_attention.concept_patch.generation import install_concept_attention

    model, _, concepts, cond, latent = _setup("Flux.1")
    encoded, _ = _encode("Flux.1", (0,), (0, 1))
    patched, session = install_concept_attention(model, concepts, _options((0,), (0, 1)))
    guider = comfy.samplers.CFGGuider(patched)
    guider.inner_set_conds({"positive": cond})
    guider.set_cfg(1.0)
    noise = comfy.sample.prepare_noise(latent, 0)
    guider.sample(noise, latent, comfy.samplers.KSAMPLER(_one_model_call), torch.tensor([0.5, 0.0]),
                  disable_pbar=True, seed=0)
    assert torch.equal(session.records[-1].saliency.maps, encoded.maps)


@pytest.mark.parametrize("name", ["Flux.1", "Flux.2 Klein"])
def test_requery_over_single_layers_equals_a_full_run(name):
    from concept_attention.concept_patch.requery import cache as image_stream_cache
    from concept_attention.concept_patch.text.encoding import encode_concepts

    image_stream_cache.CACHE.clear()
    try:
        other = encode_concepts(_clip(name), ["dog", "collar", "green grass"], pooling="first")
        first, _ = _encode(name, (0,), (1, 2), budget=1 << 30)
        assert first.metadata["requery"] is False
        requery, calls = _encode(name, (1,), (0, 1), budget=1 << 30, concepts=other, space="value")
        assert requery.metadata["requery"] is True and not calls
        fresh, _ = _encode(name, (1,), (0, 1), budget=0, concepts=other, space="value")
        assert torch.equal(requery.maps, fresh.maps)
        # a recording of dual-stream blocks only cannot serve single layers: the model runs again
        image_stream_cache.CACHE.clear()
        _encode(name, (0, 1), (), budget=1 << 30)
        again, calls = _encode(name, (1,), (0,), budget=1 << 30)
        assert again.metadata["requery"] is False and len(calls) == 1
        # ... while a recording through single blocks serves dual-stream layers
        dual_only, calls = _encode(name, (0,), (), budget=1 << 30)
        assert dual_only.metadata["requery"] is True and not calls
        assert torch.equal(dual_only.maps, _encode(name, (0,), (), budget=0)[0].maps)
    finally:
        image_stream_cache.CACHE.clear()


def test_single_layer_errors_name_the_block_counts(sd3_clip):
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError
    from concept_attention.concept_patch.generation import install_concept_attention
    from concept_attention.concept_patch.text.encoding import encode_concepts

    model, _, concepts, _, _ = _setup("Flux.1")
    with pytest.raises(ConceptAttentionError, match=r"single-stream layer 3 .* 2 dual-stream blocks \(0-1\) and "
                                                     r"3 single-stream blocks \(0-2\)"):
        install_concept_attention(model, concepts, _options((0,), (3,)))
    sd3 = tiny_models.sd3_model(depth=1)
    with pytest.raises(ConceptAttentionError, match="no single-stream blocks"):
        install_concept_attention(sd3, encode_concepts(sd3_clip, ["dog"]), _options((0,), (0,)))


# ---------------------------------------------------------------------------------------------
# HiDream: single-stream blocks with no dit hook (object-patched like its dual-stream blocks)
# ---------------------------------------------------------------------------------------------


@functools.cache
def _hidream():
    from concept_attention.concept_patch.text.encoding import encode_concepts

    clip = tiny_models.hidream_clip()
    # No MoE: the reference needs no router (the bit-identity test below runs the MoE, concepts included).
    model = tiny_models.hidream_model(depth=2, single_depth=3, seed=34, experts=0)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    return model, clip, encode_concepts(clip, CONCEPTS), cond


_module_scope = cleared_after_module(_setup, _clip, _hidream, one_thread=True)


@pytest.mark.parametrize("layers, single_layers, space, variant", [((1,), (0, 2), "output", "I1"),
                                                                    ((), (1,), "value", "I1"),
                                                                    ((0,), (0, 2), "output", "E1")])
def test_hidream_single_layer_maps_match_the_fp64_reference(layers, single_layers, space, variant):
    """E1: the condition picture's tokens sit beside the picture's in every single block too; the maps cover the
    picture only."""
    from concept_attention.concept_patch.encode import encode_saliency

    model, clip, concepts, cond = _hidream()
    dm = model.model.diffusion_model
    g = torch.Generator().manual_seed(12)
    latent = torch.randn(2, 16, 7, 10, generator=g)
    if variant == "E1":
        condition = torch.randn(2, 16, 7, 10, generator=g)
        cond = [[c, {**d, "concat_latent_image": condition}] for c, d in cond]
    seen = {}

    def hook(module, args, kwargs):
        names = ("x", "t", "y", "context", "encoder_hidden_states_llama3", "image_cond")
        seen.update(kwargs, **dict(zip(names, args)))

    handle = dm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        sal = encode_saliency(model, concepts, latent, _options(layers, single_layers, space=space), conditioning=cond)
    finally:
        handle.remove()
    image_cond = seen.get("image_cond")
    assert (image_cond is not None) == (variant == "E1")
    assert sal.maps.shape == (2, 3, 4, 5)
    args = (dm, seen["x"], seen["t"], seen["context"], seen["y"], seen["encoder_hidden_states_llama3"],
            concepts.embeddings, layers, single_layers)
    expected = single_ref.hidream_single_reference(*args, space=space, image_cond=image_cond)
    assert _max_error(sal.maps, expected) <= _atol(expected)
    wrong = single_ref.hidream_single_reference(*args, space=space, deviation="ungated_concept_update",
                                                image_cond=image_cond)
    assert _max_error(sal.maps, wrong) > 100 * _atol(wrong)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_hidream_picture_bit_identical_with_single_layers(dtype):
    from concept_attention.concept_patch.generation import install_concept_attention

    _, clip, concepts, _ = _hidream()
    model = tiny_models.hidream_model(dtype=dtype, depth=2, single_depth=3, seed=35)  # with the MoE
    plain = sample(model, clip, latent_shape=(2, 16, 6, 10), cfg=3.0, steps=2)
    patched, session = install_concept_attention(model, concepts, _options((1,), (0, 1)))
    objects = sorted(k for k in patched.object_patches if k.startswith("diffusion_model.single_stream_blocks"))
    assert [k for k in objects if k.endswith(".forward")] == \
        [f"diffusion_model.single_stream_blocks.{i}.forward" for i in (0, 1)]
    # the other object patches share offloaded weights' casts (stream/shared_casts.py), in those blocks only
    assert {k.split(".")[2] for k in objects} == {"0", "1"}
    assert torch.equal(plain, sample(patched, clip, latent_shape=(2, 16, 6, 10), cfg=3.0, steps=2))
    assert session.records[-1].saliency.metadata["model_calls_used"] == 2
    # the default (dual-stream layers) object-patches no single-stream block
    default, _ = install_concept_attention(model, concepts, _options((0, 1)))
    assert not [k for k in default.object_patches if "single_stream_blocks" in k]


def test_nodes_read_single_parts_of_the_layer_text():
    from concept_attention.nodes.concept_saliency import ConceptSaliency
    from concept_attention.nodes.generation import ConceptAttentionPatch

    model, _, concepts, cond, latent = _setup("Flux.1")
    patched = ConceptAttentionPatch.execute(model, concepts, "last 1, single 0-1", 0.0, 1.0, "output", True).result[0]
    assert _dit_patch_keys(patched) == [("double_block", 0), ("double_block", 1), ("single_block", 0),
                                        ("single_block", 1)]
    saliency = ConceptSaliency.execute(model=model, concepts=concepts, layers="single last 1", noise_level=0.5,
                                       samples=1, seed=0, space="output", softmax=True, requery_cache_mb=0,
                                       latent={"samples": latent[:1]}, conditioning=cond).result[0]
    assert saliency.metadata["layers"] == [] and saliency.metadata["single_layers"] == [2]
    with pytest.raises(ValueError, match=r"block 3 is out of range for single-stream blocks: this model has 2 "
                                         r"dual-stream blocks \(0\.\.1\) and 3 single-stream blocks \(0\.\.2\)"):
        ConceptAttentionPatch.execute(model, concepts, "single 3", 0.0, 1.0, "output", True)


def test_hidream_requery_over_single_layers_equals_a_full_run():
    from concept_attention.concept_patch.encode import encode_saliency
    from concept_attention.concept_patch.requery import cache as image_stream_cache
    from concept_attention.concept_patch.text.encoding import encode_concepts

    model, clip, concepts, cond = _hidream()
    other = encode_concepts(clip, ["dog", "collar"], pooling="first")
    latent = torch.randn(1, 16, 6, 8, generator=torch.Generator().manual_seed(9))

    def run(c, budget, **kw):
        return encode_saliency(model, c, latent, _options((1,), (0, 2), **kw), conditioning=cond, cache_budget=budget)

    image_stream_cache.CACHE.clear()
    try:
        assert run(concepts, 1 << 30).metadata["requery"] is False
        requery = run(other, 1 << 30, softmax=False)
        assert requery.metadata["requery"] is True
        assert torch.equal(requery.maps, run(other, 0, softmax=False).maps)
    finally:
        image_stream_cache.CACHE.clear()
