"""Single-stream models (Z-Image, Lumina 2, Krea 2) through the shared-weight concept stream: bit-identical pictures,
maps equal to the independent fp64 reference of the shared-weight equations, text preprocessing once per run, and
grouped-query keys/values in the concept attention.

Models come from comfy.supported_models with real ModelPatchers; concepts from each family's real ComfyUI text
encoder at tiny configs (Z-Image: Qwen3-4B; Lumina 2: Gemma-2-2B with a small SentencePiece vocabulary; Krea 2:
Qwen3-VL-4B's 12 tapped layers).
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.references import reference_single_stream as ref
from concept_attention_tests.comfy.references.reference_concept_attention import SPACES, ConceptSwitches
from concept_attention_tests.comfy.sampling import ModelInputs, conditioning, sample
from concept_attention_tests.comfy.tiny import tiny_single_stream, tiny_text_encoders

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
FAMILIES = ["z_image", "lumina2", "krea2"]
CONCEPTS = ["dog", "green grass", "sky"]
RTOL, ATOL = 1e-5, 3e-6
# Variants of a family's class, checked for pictures and maps: NewBie (Lumina 2 with a pooled CLIP vector in its
# adaLN input) and Z-Image in pixel space (4x4 RGB patches, an MLP decoder instead of the final layer).
VARIANTS = ["newbie", "z_image_pixel"]
CLIPS = {"z_image": tiny_text_encoders.z_image_clip, "lumina2": tiny_text_encoders.lumina2_clip,
         "krea2": tiny_text_encoders.krea2_clip}
ENCODER = {"newbie": "lumina2", "z_image_pixel": "z_image"}  # NewBie's Gemma-3 reads as Lumina 2's Gemma here
MODELS = {"z_image": tiny_single_stream.z_image_model, "lumina2": tiny_single_stream.lumina2_model,
          "krea2": tiny_single_stream.krea2_model, "newbie": tiny_single_stream.newbie_model,
          "z_image_pixel": tiny_single_stream.z_image_pixel_model}
NAMES = {"z_image": "Z-Image", "lumina2": "Lumina 2", "krea2": "Krea 2", "newbie": "Lumina 2",
         "z_image_pixel": "Z-Image"}


def _latent_shape(name, b, h, w):
    """Krea 2 samples a Wan 2.1 latent, with a frame axis; Z-Image pixel space samples RGB pixels (4x4 patches:
    twice the height and width of a 2x2-patch latent for the same token grid)."""
    if name == "z_image_pixel":
        return (b, 3, 2 * h, 2 * w)
    return (b, 16, 1, h, w) if name == "krea2" else (b, 16, h, w)


def _cond_extra(name):
    """NewBie's conditioning carries its pooled Jina CLIP vector."""
    if name != "newbie":
        return {}
    pooled = torch.randn(1, tiny_single_stream.NEWBIE_POOLED_DIM, generator=torch.Generator().manual_seed(5))
    return {"pooled_output": pooled}


@functools.cache
def _encoder(name):
    return CLIPS[name]()


def _clip(name):
    return _encoder(ENCODER.get(name, name))


@functools.cache
def _concepts(name):
    return encode_concepts(_clip(name), CONCEPTS)


@functools.cache
def _reference_model(name):
    return MODELS[name](seed=41)


_module_scope = cleared_after_module(_encoder, _concepts, _reference_model)


def _patched(model, name, layers=(0, 1, 2)):
    return install_concept_attention(model, _concepts(name), SaliencyOptions(layers=layers))


# ---------------------------------------------------------------------------------------------
# the picture does not change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", FAMILIES + VARIANTS)
def test_bit_identical(name, dtype):
    model = MODELS[name](dtype=dtype)
    shape = _latent_shape(name, 2, 6, 10)  # batch 2, non-square, cond + uncond
    plain = sample(model, _clip(name), latent_shape=shape, cfg=3.0, **_cond_extra(name))
    patched, session = _patched(model, name)
    out = sample(patched, _clip(name), latent_shape=shape, cfg=3.0, **_cond_extra(name))
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    saliency = session.records[-1].saliency
    assert saliency.maps.shape == (2, 3, 3, 5) and saliency.metadata["model_family"] == NAMES[name]
    assert torch.isfinite(saliency.maps).all()


_REFERENCE_PICTURE_CASES = {
    # Z-Image Omni: a reference picture (with its SigLIP pad tokens) before the picture, read at timestep 0 (the
    # modulation batch doubles).
    "z_image_omni": (lambda: tiny_single_stream.z_image_model(omni=True, depth=2), "z_image", (1, 16, 6, 8), {}),
    # Krea 2: a reference picture after the picture, at timestep 0 (index_timestep_zero).
    "krea2_timestep_zero": (lambda: tiny_single_stream.krea2_model(depth=2), "krea2", (1, 16, 1, 6, 8),
                            {"reference_latents_method": "index_timestep_zero"}),
}


@pytest.mark.parametrize("case", list(_REFERENCE_PICTURE_CASES))
def test_reference_picture_bit_identical(case):
    """With a reference picture the picture is unchanged and the maps cover the picture's tokens only."""
    build, name, shape, extra = _REFERENCE_PICTURE_CASES[case]
    model = build()
    ref_shape = shape[:-2] + (4, 6)
    refs = [torch.randn(ref_shape, generator=torch.Generator().manual_seed(3))]
    kwargs = dict(latent_shape=shape, cfg=2.0, reference_latents=refs, **extra)
    plain = sample(model, _clip(name), **kwargs)
    patched, session = _patched(model, name, layers=(0, 1))
    out = sample(patched, _clip(name), **kwargs)
    assert torch.equal(plain, out)
    assert session.records[-1].saliency.maps.shape == (1, 3, 3, 4)


def test_krea2_maps_with_timestep_zero_reference_match_reference():
    """With a timestep-0 reference picture the concepts keep the text's modulation rows and the maps the picture's
    tokens, as the reference computes them."""
    from concept_attention.concept_patch.encode import encode_saliency

    model = _reference_model("krea2")
    clip = _clip("krea2")
    ref_latent = torch.randn(1, 16, 1, 4, 6, generator=torch.Generator().manual_seed(3))
    cond = [[c, {**d, "reference_latents": [ref_latent], "reference_latents_method": "index_timestep_zero"}]
            for c, d in clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass"))]
    with ModelInputs(model.model.diffusion_model) as inputs:
        saliency = encode_saliency(model, _concepts("krea2"), _latent("krea2"), SaliencyOptions(layers=(0, 2)),
                                   conditioning=cond)
    reference = inputs.get(4, "ref_latents")
    assert reference is not None and inputs.kwargs.get("ref_latents_method") == "index_timestep_zero"
    dm = model.model.diffusion_model
    x, timesteps, context = inputs.get(0, "x")[:, :, 0], inputs.get(1, "timesteps"), inputs.get(2, "context")
    embeddings = _concepts("krea2").embeddings
    expected = ref.krea2_reference(dm, x, timesteps, context, embeddings, (0, 2), reference=reference[0][:, :, 0])
    _assert_close(saliency.maps, expected.maps, "krea2 with a timestep-0 reference")
    # the reference picture matters: without it the maps are others
    without = ref.krea2_reference(dm, x, timesteps, context, embeddings, (0, 2))
    assert (saliency.maps.double() - without.maps).abs().max() > 30 * ATOL


def test_z_image_omni_maps_with_reference_picture_match_reference():
    """Z-Image Omni with a reference picture: the concepts read the timestep's modulation rows (not the references'
    timestep-0 rows) and the maps the picture's tokens (after the references, before the pad tokens)."""
    from concept_attention.concept_patch.encode import encode_saliency

    model = tiny_single_stream.z_image_model(omni=True, depth=2, seed=42)
    clip = _clip("z_image")
    ref_latent = torch.randn(1, 16, 4, 6, generator=torch.Generator().manual_seed(3))
    cond = [[c, {**d, "reference_latents": [ref_latent]}]
            for c, d in clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass"))]
    with ModelInputs(model.model.diffusion_model) as inputs:
        saliency = encode_saliency(model, _concepts("z_image"), _latent("z_image"), SaliencyOptions(layers=(0, 1)),
                                   conditioning=cond)
    references = inputs.get(5, "ref_latents")
    assert references is not None and len(references) == 1
    dm = model.model.diffusion_model
    concepts = _concepts("z_image")
    expected = ref.z_image_omni_reference(dm, inputs.get(0, "x"), inputs.get(1, "timesteps"), inputs.get(2, "context"),
                                          references, concepts.embeddings, concepts.positions, (0, 1))
    _assert_close(saliency.maps, expected.maps, "Z-Image Omni with a reference picture")
    wrong = ref.z_image_omni_reference(dm, inputs.get(0, "x"), inputs.get(1, "timesteps"), inputs.get(2, "context"),
                                       references, concepts.embeddings, concepts.positions, (0, 1),
                                       deviation="concepts_at_timestep_zero")
    assert (saliency.maps.double() - wrong.maps).abs().max() > 30 * ATOL


def test_text_preprocessing_runs_once_per_run():
    """The concepts' caption refiner is timestep-independent: one extra call per sampling run, not per step."""
    model = tiny_single_stream.z_image_model(depth=2)
    refiner = model.get_model_object("diffusion_model.context_refiner.0")
    calls = []
    handle = refiner.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape))
    try:
        sample(model, _clip("z_image"), latent_shape=(1, 16, 6, 6), steps=3, cfg=3.0)
        plain_calls = len(calls)
        patched, _ = _patched(model, "z_image", layers=(1,))
        calls.clear()
        sample(patched, _clip("z_image"), latent_shape=(1, 16, 6, 6), steps=3, cfg=3.0)
    finally:
        handle.remove()
    assert plain_calls >= 3
    assert len(calls) == plain_calls + 1
    assert sum(1 for shape in calls if shape[1] == len(CONCEPTS)) == 1  # the concepts' own caption


# ---------------------------------------------------------------------------------------------
# maps == the independent reference
# ---------------------------------------------------------------------------------------------


def _encode(model, name, latent, **option_kw):
    from concept_attention.concept_patch.encode import encode_saliency

    clip = _clip(name)
    cond = conditioning(clip, "a dog on the grass under the sky", **_cond_extra(name))
    option_kw.setdefault("layers", (0, 2))
    with ModelInputs(model.model.diffusion_model) as inputs:
        saliency = encode_saliency(model, _concepts(name), latent, SaliencyOptions(**option_kw), conditioning=cond)
    return saliency, inputs


def _reference(name, model, inputs, layers=(0, 2), space="output", softmax=True, switches=None, deviation=None):
    dm = model.model.diffusion_model
    concepts = _concepts(name)
    x, timesteps, context = inputs.get(0, "x"), inputs.get(1, "timesteps"), inputs.get(2, "context")
    if name == "krea2":
        return ref.krea2_reference(dm, x[:, :, 0], timesteps, context, concepts.embeddings, layers, space=space,
                                   softmax=softmax, switches=switches, deviation=deviation)
    return ref.lumina_reference(dm, x, timesteps, context, concepts.embeddings, concepts.positions, layers,
                                space=space, softmax=softmax, switches=switches, deviation=deviation,
                                pooled=inputs.kwargs.get("clip_text_pooled"))


def _latent(name):
    return torch.randn(_latent_shape(name, 2, 7, 10), generator=torch.Generator().manual_seed(11))


def _assert_close(product, expected, what):
    atol = ATOL * max(1.0, float(expected.abs().max()))
    diff = (product.double() - expected).abs()
    assert tuple(product.shape) == tuple(expected.shape)
    assert (diff <= atol + RTOL * expected.abs()).all(), f"{what}: max |product - reference| = {diff.max():.3e}"


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("name", FAMILIES + VARIANTS)
def test_maps_match_reference(name, space, softmax):
    model = _reference_model(name)
    saliency, inputs = _encode(model, name, _latent(name), space=space, softmax=softmax)
    assert saliency.maps.shape == (2, 3, 4, 5)
    _assert_close(saliency.maps, _reference(name, model, inputs, space=space, softmax=softmax).maps,
                  f"{name} {space}")


def test_newbie_concepts_read_the_modulation_of_the_pooled_vector():
    """NewBie's blocks modulate by the timestep and the pooled CLIP vector: the concepts get that modulation (the
    reference without the pooled vector gives other maps)."""
    model = _reference_model("newbie")
    saliency, inputs = _encode(model, "newbie", _latent("newbie"), softmax=False)
    pooled = inputs.kwargs.get("clip_text_pooled")
    assert pooled is not None and torch.equal(pooled[0].float(), _cond_extra("newbie")["pooled_output"][0])
    without = ref.lumina_reference(model.model.diffusion_model, inputs.get(0, "x"), inputs.get(1, "timesteps"),
                                   inputs.get(2, "context"), _concepts("newbie").embeddings,
                                   _concepts("newbie").positions, (0, 2), softmax=False)
    assert (saliency.maps.double() - without.maps).abs().max() > 30 * ATOL * max(1.0, float(without.maps.abs().max()))


def test_z_image_pixel_space_maps_cover_the_rgb_patches():
    """Pixel-space Z-Image: one map cell per 4x4 RGB patch of the picture."""
    model = _reference_model("z_image_pixel")
    assert type(model.model.diffusion_model).__name__ == "NextDiTPixelSpace"
    saliency, _ = _encode(model, "z_image_pixel", torch.randn(1, 3, 24, 36, generator=torch.Generator().manual_seed(2)))
    assert saliency.maps.shape == (1, 3, 6, 9) and saliency.metadata["model_family"] == "Z-Image"
    assert tuple(saliency.image_size) == (24, 36)  # no VAE: the masks take the latent's own size


@pytest.mark.parametrize("switch", ["no_self_attention", "no_cross_attention"])
@pytest.mark.parametrize("name", FAMILIES)
def test_maps_match_reference_with_concept_attention_switches(name, switch):
    """With concept self-attention off the concepts also pass the text refiner each on its own."""
    model = _reference_model(name)
    switches = ConceptSwitches(self_attention=switch != "no_self_attention",
                               cross_attention=switch != "no_cross_attention")
    saliency, inputs = _encode(model, name, _latent(name), concept_self_attention=switches.self_attention,
                               concept_cross_attention=switches.cross_attention)
    _assert_close(saliency.maps, _reference(name, model, inputs, switches=switches).maps, f"{name} {switch}")


_DEVIATIONS = [(n, d) for n in ("z_image", "lumina2") for d in ref.LUMINA_DEVIATIONS] + \
              [("krea2", d) for d in ref.KREA2_DEVIATIONS]


@pytest.mark.parametrize("name,deviation", _DEVIATIONS)
def test_comparison_catches_plausible_mistakes(name, deviation):
    """Concepts without the text refiner, at position 0, updated without the sandwich norms (NextDiT); maps after
    Krea 2's sigmoid
    gate, without its refiner, or updated without gates: each moves the maps well outside the tolerance."""
    model = _reference_model(name)
    saliency, inputs = _encode(model, name, _latent(name), softmax=False)  # raw scores: no softmax to flatten them
    wrong = _reference(name, model, inputs, softmax=False, deviation=deviation).maps
    assert (saliency.maps.double() - wrong).abs().max() > 30 * ATOL * max(1.0, float(wrong.abs().max()))


def test_krea2_concepts_are_their_own_rows_of_the_template_cut_conditioning():
    """Krea 2's encoder applies token weights before it stacks its 12 layers, so its rows cannot be found by
    weights; the concept's rows are found as the rows that follow it in a causal encoder whose template prefix is
    cut: the first rows of a prompt of its own (its tokens right after "<|im_start|>user\\n")."""
    clip = _clip("krea2")
    concepts = encode_concepts(clip, ["green grass", "sky"])
    for i, name in enumerate(["green grass", "sky"]):
        cond = clip.encode_from_tokens(clip.tokenize(name))[0].float()
        own = 2 if name == "green grass" else 1  # tokens of the shipped Qwen2.5 vocabulary
        assert torch.equal(concepts.embeddings[i], cond[:own].mean(dim=0))
    assert concepts.positions.tolist() == [0.5, 0.0]


def test_layer_beyond_the_model_says_how_many_blocks_it_has():
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError

    with pytest.raises(ConceptAttentionError, match="3 .*blocks"):
        _patched(tiny_single_stream.z_image_model(), "z_image", layers=(3,))


def test_concepts_of_another_encoder_are_refused():
    from concept_attention.concept_patch.checks.errors import ConceptAttentionError

    with pytest.raises(ConceptAttentionError, match="gemma2_2b.*Z-Image model reads qwen3_4b"):
        _patched(tiny_single_stream.z_image_model(depth=1), "lumina2", layers=(0,))


# ---------------------------------------------------------------------------------------------
# grouped-query keys and values in the concept attention
# ---------------------------------------------------------------------------------------------


def _expanded(t, heads, dim=1):
    return t.repeat_interleave(heads // t.shape[dim], dim=dim)


@pytest.mark.parametrize("concept_kv_heads", [2, 8])
@pytest.mark.parametrize("tokens_first", [False, True], ids=["heads_first", "tokens_first"])
def test_concept_attention_with_fewer_key_value_heads(tokens_first, concept_kv_heads):
    """Image keys/values with 2 heads for 8 query heads (ComfyUI's enable_gqa layout) give what the same heads
    expanded by repeat_interleave give; so do the head-wise map spaces."""
    from concept_attention.concept_patch.maths.attention import concept_attention, head_dot_scores

    g = torch.Generator().manual_seed(0)
    b, h, kv, r, n, d = 2, 8, 2, 3, 5, 4
    q = torch.randn(b, h, r, d, generator=g)
    ck, cv = (torch.randn(b, concept_kv_heads, r, d, generator=g) for _ in range(2))
    ik, iv = (torch.randn(b, kv, n, d, generator=g) for _ in range(2))
    full_ik, full_iv, full_ck, full_cv = _expanded(ik, h), _expanded(iv, h), _expanded(ck, h), _expanded(cv, h)
    if tokens_first:
        ik, iv, full_ik, full_iv = (t.transpose(1, 2) for t in (ik, iv, full_ik, full_iv))
    for switches in ((True, True), (True, False), (False, True), (False, False)):
        got = concept_attention(q, ck, cv, ik, iv, *switches, tokens_first=tokens_first)
        want = concept_attention(q, full_ck, full_cv, full_ik, full_iv, *switches, tokens_first=tokens_first)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head_dot_scores(ik, q, tokens_first, heads=h), head_dot_scores(full_ik, q, tokens_first),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(head_dot_scores(iv, cv, tokens_first, heads=h),
                               head_dot_scores(full_iv, full_cv, tokens_first), rtol=1e-5, atol=1e-5)


def test_capture_reads_grouped_keys_of_a_tokens_first_call():
    """An attention call with enable_gqa and flat [B, L, H_kv·D] keys: the capture splits them by the head width."""
    from types import SimpleNamespace

    from concept_attention.concept_patch.stream.attention_capture import AttentionCapture

    g = torch.Generator().manual_seed(1)
    b, h, kv, r, length, d = 1, 4, 2, 2, 6, 8
    q = torch.randn(b, length, h * d, generator=g)
    k, v = (torch.randn(b, length, kv * d, generator=g) for _ in range(2))
    concept = tuple(torch.randn(b, h, r, d, generator=g) for _ in range(3))
    seen = []
    forward = SimpleNamespace(rows=lambda t: t, recorder=None, selected_layers=frozenset(), options=None)

    capture = AttentionCapture(forward, 0, concept, slice(2, 6))
    import concept_attention.concept_patch.stream.attention_capture as capture_module

    original = capture_module.read_image_stream
    capture_module.read_image_stream = lambda fwd, layer, qkv, view: seen.append(view) or torch.zeros(1)
    try:
        capture(lambda *a, **kw: torch.zeros(b, length, h * d), q, k, v, h, enable_gqa=True)
    finally:
        capture_module.read_image_stream = original
    view = seen[0]
    assert view.tokens_first and view.image_k.shape == (b, 4, kv, d)
    assert torch.equal(view.image_k, k.view(b, length, kv, d)[:, 2:6])
