"""The product's saliency maps equal an independent implementation of SPEC section 2.

The reference (tests/comfy/references/reference_concept_attention.py) never calls product code: it reads
the parameters of ComfyUI's own tiny Flux.1 / Chroma / SD3 / SD3.5 (MMDiT-X) models and runs their
forward, the concept stream and the maps from the equations, in float64.

The product runs the fp32 model through ComfyUI. Its inputs are recorded with a forward
pre-hook on the diffusion model (the model's own inputs, not product internals) and checked
against SPEC section 3 (z = (1-t)·x0 + t·noise, timestep, conditioning), then fed to the
reference.

Tolerance: rtol 1e-5 and atol ATOL[family] · max(1, max|reference|): maps without softmax
are raw dot products (up to ~200 here), so their absolute error scales with their size.
The product computes in fp32, so it can only be as close to the exact (fp64) maps as an
fp32 evaluation of the same equations is; the failure message prints that fp32 floor
(the reference itself run in float32) next to the product's error.
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention_tests.comfy.model_inputs import ModelCall, Setup, recorded_inputs
from concept_attention_tests.comfy.model_inputs import clone as _clone
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.references import reference_concept_attention as ref
from concept_attention_tests.comfy.tiny import tiny_models

RTOL = 1e-5
# Worst |product - fp64 reference| / max(1, max|reference|) over the 96 matrix cases:
# Flux 8.2e-7, Chroma 8.8e-7, SD3 5.3e-6; the reference itself evaluated in fp32 is off by 8.5e-7 and 5.0e-6.
# SD3's logits reach 100-200 in these random models (width 192), so a softmax turns the fp32
# logit error into a few 1e-6. A plausible mistake (tests below) moves the maps by 4e-2 to 0.5.
# (The reference evaluates the sinusoidal timestep features in fp32 as ComfyUI does; in fp64
# they differ by ~3e-5 at t = 500, which alone would cost ~1e-5 on the maps.)
ATOL = {"flux": 3e-6, "flux_schnell": 3e-6, "chroma": 3e-6, "sd3": 1.5e-5, "sd3x": 1.5e-5, "sd3_noqk": 1.5e-5}

CONCEPTS = ["dog", "green grass", "sky"]
PROMPT = "a dog on the grass under the sky"
LATENT_SHAPE = (2, 16, 7, 10)  # odd height: padded to the patch size, grid 4 x 5
SWITCHES = [(True, True), (False, True), (True, False), (False, False)]  # (self, cross), paper Table 4


# ---------------------------------------------------------------------------------------------
# setups (built once per module)
# ---------------------------------------------------------------------------------------------


@functools.cache
def _clip(kind):
    return tiny_models.flux_clip() if kind in ("flux", "chroma") else tiny_models.sd3_clip()


@functools.cache
def setup_for(name: str) -> Setup:
    from concept_attention.concept_patch.text.encoding import encode_concepts

    if name == "flux":
        kind, model, layers = "flux", tiny_models.flux_model(torch.float32), (0, 2)
    elif name == "flux_schnell":
        kind, model, layers = "flux", tiny_models.flux_model(torch.float32, guidance=False, seed=5), (1, 2)
    elif name == "chroma":
        kind, model, layers = "chroma", tiny_models.chroma_model(torch.float32, seed=6), (0, 2)
    elif name == "sd3":
        kind, model, layers = "sd3", tiny_models.sd3_model(torch.float32), (1, 2)  # 2 = the pre_only last block
    elif name == "sd3_noqk":
        # SD3-medium style: no q/k norm
        kind, model, layers = "sd3", tiny_models.sd3_model(torch.float32, qk_norm=None, seed=4), (0, 2)
    elif name == "sd3x":
        # SD3.5-medium style: MMDiT-X attn2 in blocks 0 and 1; the pre_only last block selected
        kind, model, layers = "sd3", tiny_models.sd3_model(torch.float32, mmdit_x_layers=[0, 1], seed=3), (0, 2)
    else:
        raise ValueError(name)
    clip = _clip(kind)
    concepts = encode_concepts(clip, CONCEPTS, pooling="mean")
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
    latent = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(11))
    return Setup(name, model, clip, concepts, cond, layers, latent, kind)


# ---------------------------------------------------------------------------------------------
# recording the model's inputs, running the reference, comparing
# ---------------------------------------------------------------------------------------------


_module_scope = cleared_after_module(setup_for, _clip, one_thread=True)


def reference(setup: Setup, call: ModelCall, layers=None, space="output", softmax=True, switches=(True, True),
              dtype=torch.float64, deviation=None) -> ref.ReferenceResult:
    layers = layers or setup.layers
    sw = ref.ConceptSwitches(self_attention=switches[0], cross_attention=switches[1])
    emb = setup.concepts.embeddings
    if setup.kind == "flux":
        return ref.flux_reference(setup.dm, call.x, call.timestep, call.context, call.y, call.guidance, emb, layers,
                                  space, softmax, sw, dtype=dtype, deviation=deviation)
    if setup.kind == "chroma":
        return ref.chroma_reference(setup.dm, call.x, call.timestep, call.context, call.guidance, emb, layers, space,
                                    softmax, sw, dtype=dtype, deviation=deviation)
    return ref.sd3_reference(setup.dm, call.x, call.timestep, call.context, call.y, emb, layers, space, softmax, sw,
                             dtype=dtype, deviation=deviation)


def tolerance(name, expected):
    return RTOL, ATOL[name] * max(1.0, float(expected.abs().max()))


def assert_maps_match(setup: Setup, product: torch.Tensor, expected: torch.Tensor, fp32_floor=None, what=""):
    assert product.dtype == torch.float32
    assert tuple(product.shape) == tuple(expected.shape), (tuple(product.shape), tuple(expected.shape))
    rtol, atol = tolerance(setup.name, expected)
    diff = (product.double() - expected).abs()
    bad = diff > atol + rtol * expected.abs()
    floor_value = None
    if bad.any() and fp32_floor is not None:
        # The product computes in fp32: it cannot be held closer to the exact maps than an fp32
        # evaluation of the same equations is (up to a factor 2 for another order of operations).
        # The fixed tolerance covers that floor on most CPUs; where a CPU's kernels land above it,
        # the measured floor decides.
        floor_value = fp32_floor()
        bad = diff > max(atol, 2.0 * floor_value) + rtol * expected.abs()
    if bad.any():
        floor = "" if floor_value is None else (
            f"; an fp32 evaluation of the reference itself differs from fp64 by {floor_value:.3e}")
        pytest.fail(
            f"{setup.name} {what}: product maps differ from the reference at {int(bad.sum())}/{bad.numel()} "
            f"entries: max |product - reference| = {diff.max():.3e} (tolerance atol {atol:.1e}, rtol {rtol:.0e}); "
            f"max |reference| = {expected.abs().max():.3e}{floor}.",
            pytrace=False,
        )


def encode(setup: Setup, options, latent=None, conditioning="prompt"):
    from concept_attention.concept_patch.encode import encode_saliency

    latent = setup.latent if latent is None else latent
    cond = setup.cond if conditioning == "prompt" else conditioning
    with recorded_inputs(setup.dm) as calls:
        sal = encode_saliency(setup.model, setup.concepts, latent, options, conditioning=cond, noise_level=0.5, seed=0)
    assert len(calls) == 1, f"encode mode should call the model once, it called it {len(calls)} times"
    return sal, calls[0]


def options(setup: Setup, **kw):
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    kw.setdefault("layers", setup.layers)
    return SaliencyOptions(**kw)


# ---------------------------------------------------------------------------------------------
# the reference is faithful to ComfyUI's forward, and the product feeds it the right inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flux", "flux_schnell", "chroma", "sd3", "sd3x", "sd3_noqk"])
def test_reference_forward_reproduces_comfyui_blocks(name):
    """The reference's image and text streams after every block equal ComfyUI's own blocks
    (run by ComfyUI, no patch), so its o_x, k_x, v_x are the ones the model computes."""
    s = setup_for(name)
    blocks = s.dm.joint_blocks if s.kind == "sd3" else s.dm.double_blocks
    outs = {}
    handles = [
        blk.register_forward_hook(lambda m, a, out, i=i: outs.__setitem__(i, tuple(_clone(o) for o in out)))
        for i, blk in enumerate(blocks)
    ]
    x = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(2))
    cond, pooled = s.cond[0][0].expand(2, -1, -1), s.cond[0][1]["pooled_output"].expand(2, -1)
    try:
        with torch.no_grad():
            if s.kind == "flux":
                t = torch.tensor([0.7, 0.3])
                g = torch.tensor([3.5, 2.0]) if s.dm.params.guidance_embed else None
                s.dm(x, t, context=cond, y=pooled, guidance=g)
                call = ModelCall(x, t, cond, pooled, g)
            elif s.kind == "chroma":
                t, g = torch.tensor([0.7, 0.3]), torch.tensor([0.0, 2.0])
                s.dm(x, t, context=cond, guidance=g)
                call = ModelCall(x, t, cond, None, g)
            else:
                t = torch.tensor([700.0, 300.0])
                s.dm(x, t, context=cond, y=pooled)
                call = ModelCall(x, t, cond, pooled, None)
    finally:
        for h in handles:
            h.remove()
    r = reference(s, call, layers=(len(blocks) - 1,))
    # fp32 ComfyUI vs the fp64 reference: observed <= 7e-6 on streams of size up to ~12
    for i in range(len(blocks)):
        img, txt = outs[i][::-1] if s.kind == "sd3" else outs[i]
        torch.testing.assert_close(r.block_img[i].float(), img, rtol=1e-5, atol=2e-5, msg=f"image stream, block {i}")
        if txt is None:
            assert r.block_txt[i] is None  # SD3's pre_only last block has no text update
        else:
            torch.testing.assert_close(r.block_txt[i].float(), txt, rtol=1e-5, atol=2e-5, msg=f"text stream, block {i}")


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_encode_feeds_the_noised_latent_to_the_model(name):
    """SPEC 3: z = (1-t)·x0 + t·noise with seeded ComfyUI noise, one model call at noise level t."""
    import comfy.sample

    s = setup_for(name)
    _, call = encode(s, options(s))
    sigma = 0.5
    x0 = s.model.model.process_latent_in(s.latent)
    noise = comfy.sample.prepare_noise(s.latent, 0)
    torch.testing.assert_close(call.x, (1 - sigma) * x0 + sigma * noise, rtol=1e-6, atol=1e-6)
    expected_t = sigma if s.kind == "flux" else sigma * 1000.0  # Flux: timestep = sigma; SD3: sigma·1000
    torch.testing.assert_close(call.timestep.float(), torch.full((2,), expected_t))
    torch.testing.assert_close(call.context, s.cond[0][0].expand(2, -1, -1))
    torch.testing.assert_close(call.y, s.cond[0][1]["pooled_output"].expand(2, -1))
    if s.kind == "flux":
        torch.testing.assert_close(call.guidance.float(), torch.full((2,), 3.5))  # Flux dev default


# ---------------------------------------------------------------------------------------------
# maps == reference: every space, softmax on/off, Table-4 switches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda sw: f"self{int(sw[0])}-cross{int(sw[1])}")
@pytest.mark.parametrize("softmax", [True, False], ids=["softmax", "raw"])
@pytest.mark.parametrize("space", ref.SPACES)
@pytest.mark.parametrize("name", ["flux", "chroma", "sd3", "sd3x"])
def test_maps_match_reference(name, space, softmax, switches):
    s = setup_for(name)
    opts = options(s, space=space, softmax=softmax, concept_self_attention=switches[0],
                   concept_cross_attention=switches[1])
    sal, call = encode(s, opts)
    kw = dict(space=space, softmax=softmax, switches=switches)
    expected = reference(s, call, **kw).maps
    assert_maps_match(s, sal.maps, expected, lambda: (reference(s, call, dtype=torch.float32, **kw).maps.double()
                                                      - expected).abs().max().item(), f"{space} softmax={softmax} {switches}")


def test_switches_and_spaces_change_the_maps():
    """The parametrised cases are not vacuous: each switch and space gives different maps."""
    s = setup_for("flux")
    call = encode(s, options(s))[1]
    base = reference(s, call).maps
    others = [reference(s, call, switches=sw).maps for sw in SWITCHES[1:]]
    others += [reference(s, call, space=sp).maps for sp in ref.SPACES[1:]]
    for other in others:
        assert (other - base).abs().max() > 1e-3


@pytest.mark.parametrize("name,deviation", [(n, d) for n in ("flux",) for d in ref.FLUX_DEVIATIONS]
                         + [(n, d) for n in ("chroma",) for d in ref.CHROMA_DEVIATIONS]
                         + [(n, d) for n in ("sd3x",) for d in ref.SD3_DEVIATIONS])
def test_comparison_catches_plausible_mistakes(name, deviation):
    """A reference with one plausible mistake is far outside the tolerance, so the match above
    means the product implements these details as SPEC 2 states them."""
    s = setup_for(name)
    sal, call = encode(s, options(s))
    wrong = reference(s, call, deviation=deviation).maps
    _, atol = tolerance(name, wrong)
    assert (sal.maps.double() - wrong).abs().max() > 100 * atol


# ---------------------------------------------------------------------------------------------
# other properties
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flux_schnell", "sd3_noqk"])
def test_default_empty_prompt_matches_reference(name):
    """Without a prompt the concepts' own empty-prompt conditioning is used (schnell: no guidance)."""
    s = setup_for(name)
    sal, call = encode(s, options(s), conditioning=None)
    torch.testing.assert_close(call.context, s.concepts.empty_prompt[0][0].expand(2, -1, -1))
    if s.kind == "flux":
        assert not s.dm.params.guidance_embed
    assert_maps_match(s, sal.maps, reference(s, call).maps, what="empty prompt")


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_softmax_maps_sum_to_one_over_concepts(name):
    s = setup_for(name)
    sal, _ = encode(s, options(s, softmax=True))
    assert (sal.maps >= 0).all()
    torch.testing.assert_close(sal.maps.sum(dim=1), torch.ones(sal.maps.shape[0], *sal.maps.shape[2:]),
                               rtol=0, atol=1e-6)
    raw, _ = encode(s, options(s, softmax=False))
    assert (raw.maps.sum(dim=1) - 1).abs().max() > 1e-2  # raw scores are not normalised


@pytest.mark.parametrize("hw", [(12, 6), (5, 9), (3, 4)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_non_square_latents_give_the_token_grid(name, hw):
    s = setup_for(name)
    H, W = hw
    latent = torch.randn(1, 16, H, W, generator=torch.Generator().manual_seed(H * 100 + W))
    sal, call = encode(s, options(s), latent=latent)
    assert tuple(sal.maps.shape) == (1, len(CONCEPTS), (H + 1) // 2, (W + 1) // 2)
    assert sal.grid == ((H + 1) // 2, (W + 1) // 2)
    assert_maps_match(s, sal.maps, reference(s, call).maps, what=f"latent {H}x{W}")


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_a_batch_of_two_latents_gives_two_maps(name):
    s = setup_for(name)
    a = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(21))
    b = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(22)) * 2.0 + 0.5
    sal, call = encode(s, options(s), latent=torch.cat([a, b]))
    assert sal.maps.shape[0] == 2
    assert (sal.maps[0] - sal.maps[1]).abs().max() > 1e-2
    assert_maps_match(s, sal.maps, reference(s, call).maps, what="batch of two")


@pytest.mark.parametrize("name", ["sd3", "sd3x"])
def test_sd3_blocks_outside_the_fused_path_use_comfyuis_own_methods(name, monkeypatch):
    """Blocks with RMSNorm or scale-only modulation go through ComfyUI's pre/post_attention:
    forced here for every block, the maps are still the reference's."""
    from concept_attention.concept_patch.families import sd3

    asked = []
    monkeypatch.setattr(sd3, "_standard_layer_norm_block", lambda ctx: asked.append(ctx) and False)
    s = setup_for(name)
    sal, call = encode(s, options(s))
    assert len(asked) == len(s.model.model.diffusion_model.joint_blocks)
    assert_maps_match(s, sal.maps, reference(s, call).maps, what="ComfyUI's pre/post_attention path")


@pytest.mark.parametrize("name", ["flux", "sd3x"])
def test_generation_mode_maps_match_reference_on_cond_rows(name):
    """KSampler with cfg > 1: every model call carries cond and uncond rows; the maps are the
    reference on the cond rows, averaged over the calls (steps)."""
    import comfy.sample

    from concept_attention.concept_patch.generation import install_concept_attention

    s = setup_for(name)
    patched, session = install_concept_attention(s.model, s.concepts, options(s))
    negative = s.clip.encode_from_tokens_scheduled(s.clip.tokenize("blurry"))
    latent = torch.zeros(LATENT_SHAPE)
    noise = comfy.sample.prepare_noise(latent, 7)
    with recorded_inputs(s.dm) as calls:
        comfy.sample.sample(patched, noise, 2, 4.0, "euler", "simple", s.cond, negative, latent, seed=7,
                            disable_pbar=True)
    B = LATENT_SHAPE[0]
    per_chunk = []
    for call in calls:
        assert call.x.shape[0] == B * len(call.cond_or_uncond)
        for j, kind in enumerate(call.cond_or_uncond):
            if kind == 0:
                per_chunk.append(reference(s, call.rows(j * B, (j + 1) * B)).maps)
    assert len(per_chunk) == 2, f"expected one cond chunk per step, got {len(per_chunk)} ({[c.cond_or_uncond for c in calls]})"
    assert any(1 in c.cond_or_uncond for c in calls), "cfg > 1 should also run uncond rows"
    expected = sum(per_chunk) / len(per_chunk)
    assert_maps_match(s, session.records[-1].saliency.maps, expected, what="generation mode")


# ---------------------------------------------------------------------------------------------
# concept embeddings: `first` vs `mean` of the concept's own tokens
# ---------------------------------------------------------------------------------------------


def _own_positions(clip, kind, name):
    """Positions of the concept's own tokens, found from the token ids (no product code):
    everything but the start, end and padding tokens."""
    if kind == "flux":
        sub, key = clip.tokenizer.t5xxl, "t5xxl"  # Flux conditioning = T5 states (no start token)
    else:
        sub, key = clip.tokenizer.clip_l, "l"  # SD3 conditioning starts with the CLIP-L|G states
    special = {t for t in (getattr(sub, "start_token", None), sub.end_token, getattr(sub, "pad_token", None))
               if t is not None}
    tokens = [tok for tok, *_ in clip.tokenize(name)[key][0]]
    positions = [i for i, tok in enumerate(tokens) if tok not in special]
    own_ids = sub.tokenizer(name, add_special_tokens=False)["input_ids"]
    assert [tokens[i] for i in positions] == own_ids  # same tokens as the HF tokenizer gives
    first = 0 if kind == "flux" else 1
    assert positions == list(range(first, first + len(own_ids)))
    return positions


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_first_and_mean_pooling_of_own_tokens(kind):
    from concept_attention.concept_patch.text.encoding import encode_concepts

    clip = _clip(kind)
    names = ["dog", "red fox jumping", "sky", "green grass"]
    by_mode = {mode: encode_concepts(clip, names, pooling=mode) for mode in ("first", "mean")}
    for i, name in enumerate(names):
        positions = _own_positions(clip, kind, name)
        states = clip.encode_from_tokens(clip.tokenize(name))[0].float()
        expected = {"first": states[positions[0]], "mean": states[positions].mean(dim=0)}
        for mode in ("first", "mean"):
            got = by_mode[mode].embeddings[i]
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, expected[mode], rtol=1e-5, atol=1e-6, msg=f"{mode} pooling of {name!r}")
        first, mean = by_mode["first"].embeddings[i], by_mode["mean"].embeddings[i]
        if len(positions) == 1:
            torch.testing.assert_close(first, mean, rtol=0, atol=0)
        else:
            assert (first - mean).abs().max() > 1e-3, f"{name!r} has {len(positions)} tokens; first and mean must differ"
    counts = [len(_own_positions(clip, kind, n)) for n in names]
    assert counts[0] == 1 and counts[1] > 1, counts  # both cases are exercised
