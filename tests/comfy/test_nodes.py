"""The nodes, called with real ComfyUI objects (tiny models), checked for shapes and meaning."""

from __future__ import annotations

import os

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention.nodes import NODE_IDS, NODES
from concept_attention.nodes.concept_list import ConceptList
from concept_attention.nodes.concept_saliency import ConceptSaliency
from concept_attention.nodes.generation import ConceptAttentionPatch, SamplingSaliency
from concept_attention.nodes.saliency_files import LoadSaliency, SaveSaliency
from concept_attention.nodes.saliency_to_mask import SaliencyToMask
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_models


@pytest.fixture(scope="module")
def flux(comfyui_path):
    return tiny_models.flux_model(depth=3)


@pytest.fixture(scope="module")
def vae(comfyui_path):
    return tiny_models.vae()


@pytest.fixture(scope="module")
def concepts(flux_clip):
    return ConceptList.execute(clip=flux_clip, concepts=" dog,\n grass , ,\nblue sky ", pooling="mean").result[0]


def _saliency(flux, concepts, **kw):
    args = dict(model=flux, concepts=concepts, layers="all", noise_level=0.5, samples=1, seed=0,
                space="output", softmax=True)
    args.update(kw)
    return ConceptSaliency.execute(**args)


def _mask(saliency, concepts, method="mean", **kw):
    args = dict(saliency=saliency, concepts=concepts, method=method, threshold=0.5, grow=0, feather=0.0, invert=False)
    args.update(kw)
    return SaliencyToMask.execute(**args).result[0]


def test_every_node_is_documented_and_prefixed():
    for node in NODES:
        schema = node.define_schema()
        assert schema.node_id.startswith("ConceptAttention") and schema.category == "ConceptAttention"
        assert schema.description
        for socket in list(schema.inputs) + list(schema.outputs):
            assert socket.tooltip, (schema.node_id, socket)
    assert len(set(NODE_IDS)) == len(NODES)


def test_concept_list_parses_and_encodes(concepts, flux_clip, sd3_clip):
    assert concepts.names == ["dog", "grass", "blue sky"]
    assert concepts.embeddings.shape == (3, tiny_models.FLUX_CONTEXT_DIM)
    sd3 = ConceptList.execute(clip=sd3_clip, concepts="dog, grass", pooling="first").result[0]
    assert sd3.embeddings.shape == (2, tiny_models.SD3_CONTEXT_DIM)
    first = ConceptList.execute(clip=flux_clip, concepts="blue sky", pooling="first").result[0]
    assert not torch.equal(first.embeddings[0], concepts.embeddings[2])


@pytest.mark.parametrize("text, message", [
    ("", "no concepts"),
    (" , ,\n", "no concepts"),
    ("dog, Dog", "listed twice"),
    (", ".join(f"c{i}" for i in range(65)), "at most 64"),
])
def test_concept_list_rejects_bad_text(flux_clip, text, message):
    with pytest.raises(ConceptAttentionError, match=message):
        ConceptList.execute(clip=flux_clip, concepts=text, pooling="mean")


def test_saliency_from_image_and_vae(flux, concepts, vae):
    image = torch.rand(2, 48, 80, 3, generator=torch.Generator().manual_seed(1))
    out = _saliency(flux, concepts, image=image, vae=vae)
    saliency, preview = out.result
    assert isinstance(saliency, SaliencyMaps)
    assert saliency.maps.shape == (2, 3, 3, 5) and saliency.image_size == (48, 80)
    # per picture: the segmentation view, then one map per concept; preview-sized, aspect kept
    assert preview.shape[0] == 2 * (3 + 1) and preview.shape[-1] == 3
    assert preview.shape[2] == 512 and preview.min() >= 0 and preview.max() <= 1
    assert len(out.ui["images"]) == preview.shape[0] and out.ui["concept_segmentation"] == [True]
    legend = out.ui["concept_legend"]
    assert [e["name"] for e in legend] == concepts.names
    assert abs(sum(e["share"] for e in legend) - 1) < 1e-3
    # shares per picture: each picture's shares sum to 1 and match its own winners
    for i in range(2):
        assert abs(sum(e["shares"][i] for e in legend) - 1) < 1e-3
        winners = saliency.maps[i].argmax(0)
        assert [e["shares"][i] for e in legend] == [round(float((winners == j).float().mean()), 4) for j in range(3)]
    # two different pictures give two different maps
    assert not torch.allclose(saliency.maps[0], saliency.maps[1])
    torch.testing.assert_close(saliency.maps.sum(1), torch.ones(2, 3, 5))


def test_saliency_samples_average_noise_draws(flux, concepts):
    latent = {"samples": torch.randn(1, 16, 6, 6, generator=torch.Generator().manual_seed(2))}
    one = _saliency(flux, concepts, latent=latent, seed=5).result[0].maps
    two = _saliency(flux, concepts, latent=latent, seed=6).result[0].maps
    both = _saliency(flux, concepts, latent=latent, seed=5, samples=2).result[0].maps
    torch.testing.assert_close(both, (one + two) / 2)


def test_saliency_input_errors(flux, concepts):
    with pytest.raises(ConceptAttentionError, match="IMAGE together with a VAE, or a LATENT"):
        _saliency(flux, concepts)
    with pytest.raises(ConceptAttentionError, match="needs its VAE"):
        _saliency(flux, concepts, image=torch.rand(1, 48, 48, 3))
    with pytest.raises(ConceptAttentionError, match="same picture"):
        _saliency(flux, concepts, image=torch.rand(1, 96, 96, 3), latent={"samples": torch.randn(1, 16, 6, 6)})
    with pytest.raises(ValueError, match="blocks"):
        _saliency(flux, concepts, latent={"samples": torch.randn(1, 16, 6, 6)}, layers="5")


@pytest.mark.parametrize("value, message", [
    (float("nan"), r"the latent holds 1 NaN or infinite values \(of 576\)"),
    (float("-inf"), r"the latent holds 1 NaN or infinite values \(of 576\)"),
    (1e30, r"NaN or infinite maps for the latent: its largest value is 1e\+30, far beyond what a VAE makes"),
])
def test_a_non_finite_or_absurd_latent_is_refused_naming_the_latent(flux, concepts, value, message):
    samples = torch.randn(1, 16, 6, 6, generator=torch.Generator().manual_seed(4))
    samples[0, 3, 2, 1] = value
    with pytest.raises(ConceptAttentionError, match=message) as refused:
        _saliency(flux, concepts, latent={"samples": samples}, requery_cache_mb=0)
    assert "fp32" not in str(refused.value) and "dtype" not in str(refused.value)  # a wider dtype would not help
    samples[0, 3, 2, 1] = 0.0  # the model goes on working
    assert torch.isfinite(_saliency(flux, concepts, latent={"samples": samples}).result[0].maps).all()


def test_seed_with_samples_past_the_largest_seed_is_explained(flux, concepts):
    latent = {"samples": torch.randn(1, 16, 4, 4)}
    top = 0xFFFFFFFFFFFFFFFF
    with pytest.raises(ConceptAttentionError, match=rf"seed {top} with 2 samples runs past the largest seed.*at most {top - 1}"):
        _saliency(flux, concepts, latent=latent, seed=top, samples=2)
    assert _saliency(flux, concepts, latent=latent, seed=top - 1, samples=2).result[0].maps.shape[0] == 1


def test_picture_too_large_for_sd3s_position_table_names_the_largest(sd3_clip):
    sd3 = tiny_models.sd3_model()  # position table of 64 patches of 2 latent cells: at most 1024 px
    concepts = ConceptList.execute(clip=sd3_clip, concepts="dog, sky", pooling="mean").result[0]
    with pytest.raises(ConceptAttentionError, match=r"1040x1024 pixels but this model takes at most 1024x1024"):
        _saliency(sd3, concepts, latent={"samples": torch.zeros(1, 16, 128, 130)})
    with pytest.raises(ConceptAttentionError, match=r"takes at most 1024x1024"):
        _saliency(sd3, concepts, image=torch.rand(1, 1040, 64, 3), vae=_FailingVae())
    assert _saliency(sd3, concepts, latent={"samples": torch.zeros(1, 16, 128, 4)}).result[0].grid == (64, 2)
    # generation mode: the patched model says so before ComfyUI's own model asserts
    patched = ConceptAttentionPatch.execute(model=sd3, concepts=concepts, layers="all", start_percent=0.0, end_percent=1.0,
                                 space="output", softmax=True).result[0]
    with pytest.raises(ConceptAttentionError, match=r"1040x1024 pixels but this model takes at most 1024x1024"):
        sample(patched, sd3_clip, latent_shape=(1, 16, 128, 130), steps=1, cfg=1.0)


class _FailingVae:
    """A VAE that must not be reached: the size checks come before encoding."""

    downscale_ratio = 8

    def spacial_compression_encode(self):
        return 8

    def encode(self, image):
        raise AssertionError("the picture should have been refused before encoding")


def test_picture_smaller_than_a_latent_cell_is_explained(flux, concepts, vae):
    for size in (1, 7):
        with pytest.raises(ConceptAttentionError, match=rf"the picture is {size}x{size} pixels; this VAE needs at least 8x8"):
            _saliency(flux, concepts, image=torch.rand(1, size, size, 3), vae=vae)
    assert _saliency(flux, concepts, image=torch.rand(1, 8, 8, 3), vae=vae).result[0].image_size == (8, 8)


def test_preview_costs_what_a_preview_needs(comfy_dirs):
    """Concept Saliency's preview of 64 concepts on a 1024² picture peaked at 5.7 GiB: full-size panels
    for every concept. Now the node's display and its preview output are one preview-sized tensor."""
    from concept_attention.nodes.preview import saliency_preview
    from concept_attention_tests.unit.allocations import torch_cpu_peak_bytes

    maps = torch.rand(1, 64, 64, 64, generator=torch.Generator().manual_seed(0)).softmax(1)
    saliency = SaliencyMaps(maps, [f"concept {i}" for i in range(64)], (1024, 1024))
    picture = torch.rand(1, 1024, 1024, 3)
    peak, (panels, payload) = torch_cpu_peak_bytes(saliency_preview, saliency, picture, ConceptSaliency)
    assert peak < 256 * 2**20, f"{peak / 2**20:.0f} MiB"
    assert panels.shape[0] == 65 and max(panels.shape[1:3]) <= 600
    assert len(payload["images"]) == 65


def test_masks_have_meaning(flux, concepts):
    latents = {"samples": torch.randn(2, 16, 6, 10, generator=torch.Generator().manual_seed(3))}
    saliency = _saliency(flux, concepts, latent=latents).result[0]
    # on the token grid itself, the paper's mean threshold (relative_mean) is exactly map > mean(map)
    on_grid = SaliencyMaps(saliency.maps, saliency.names, image_size=saliency.grid)
    dog = saliency.maps[:, 0]
    expected = (dog > dog.mean(dim=(1, 2), keepdim=True)).float()
    assert torch.equal(_mask(on_grid, "dog", method="relative_mean"), expected)
    # the default mean: the same where dog wins a token of the picture, empty where it wins none
    present = (saliency.maps.argmax(dim=1) == 0).flatten(1).any(dim=1)
    assert torch.equal(_mask(on_grid, "dog"), expected * present.view(-1, 1, 1))
    # at picture resolution, non-square, one mask per image, and the two images differ
    mask = _mask(saliency, "dog", method="relative_mean")
    assert mask.shape == (2, 48, 80) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(mask[0], mask[1])
    # argmax masks of all concepts partition the picture
    parts = torch.stack([_mask(saliency, name, method="argmax") for name in saliency.names])
    assert torch.equal(parts.sum(0), torch.ones(2, 48, 80))
    # several concepts at once, soft masks, invert
    assert torch.equal(_mask(saliency, "dog, grass", method="argmax"), parts[0] + parts[1])
    soft = _mask(saliency, "grass", method="soft")
    assert soft.min() >= 0 and soft.max() <= 1 and len(soft.unique()) > 2
    assert torch.equal(_mask(saliency, "dog", method="relative_mean", invert=True), 1 - mask)


def test_mask_errors(flux, concepts):
    saliency = _saliency(flux, concepts, latent={"samples": torch.randn(1, 16, 6, 6)}).result[0]
    with pytest.raises(ValueError, match="'cat' is not in"):
        _mask(saliency, "cat")
    with pytest.raises(ValueError, match="choose one or more concept"):
        _mask(saliency, "")
    with pytest.raises(ValueError, match="saliency maps were made for"):
        _mask(saliency, "dog", image=torch.rand(1, 64, 64, 3))


def test_generation_mode_nodes(flux, flux_clip, concepts):
    patched = ConceptAttentionPatch.execute(model=flux, concepts=concepts, layers="1-2", start_percent=0.0,
                                            end_percent=1.0, space="output", softmax=True).result[0]
    assert patched is not flux
    plain = sample(flux, flux_clip, latent_shape=(1, 16, 6, 8), seed=1, cfg=1.0)
    first = sample(patched, flux_clip, latent_shape=(1, 16, 6, 8), seed=1, cfg=1.0)
    second = sample(patched, flux_clip, latent_shape=(1, 16, 6, 8), seed=2, cfg=1.0)
    assert torch.equal(plain, first)
    maps1 = SamplingSaliency.execute(model=patched, latent={"samples": first}).result[0]
    maps2 = SamplingSaliency.execute(model=patched, latent={"samples": second}).result[0]
    assert maps1.maps.shape == (1, 3, 3, 4) and maps1.image_size == (48, 64)
    assert not torch.equal(maps1.maps, maps2.maps)
    with pytest.raises(ConceptAttentionError, match="no sampling run"):
        SamplingSaliency.execute(model=patched, latent={"samples": first + 1})
    diverged = first.clone()
    diverged[0, 0, 0, :2] = float("nan")
    with pytest.raises(ConceptAttentionError, match=r"the sampler's LATENT holds 2 NaN or infinite values \(of 768\)"):
        SamplingSaliency.execute(model=patched, latent={"samples": diverged})
    # a patch applied later that skips block 1 on every call leaves the run with nothing readable
    skipping = patched.clone()
    skipping.set_model_patch_replace(lambda args, extra: args, "dit", "double_block", 1)
    skipped = sample(skipping, flux_clip, latent_shape=(1, 16, 6, 8), seed=3, cfg=1.0)
    with pytest.raises(ConceptAttentionError, match="recorded no maps"):
        SamplingSaliency.execute(model=skipping, latent={"samples": skipped})
    with pytest.raises(ConceptAttentionError, match="no ConceptAttention patch"):
        SamplingSaliency.execute(model=flux, latent={"samples": first})
    with pytest.raises(ValueError, match="step range"):
        ConceptAttentionPatch.execute(model=flux, concepts=concepts, layers="all", start_percent=0.6,
                                      end_percent=0.4, space="output", softmax=True)


def test_save_and_load_saliency(flux, concepts, comfy_dirs):
    import folder_paths

    saliency = _saliency(flux, concepts, latent={"samples": torch.randn(1, 16, 6, 6)}).result[0]
    out = SaveSaliency.execute(saliency=saliency, filename_prefix="tests/maps")
    saved = out.ui["saliency_files"][0]
    assert len(out.ui["images"]) == 3
    src = os.path.join(folder_paths.get_output_directory(), saved)
    dst = os.path.join(folder_paths.get_input_directory(), "maps.safetensors")
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())
    assert LoadSaliency.validate_inputs(file="maps.safetensors") is True
    loaded = LoadSaliency.execute(file="maps.safetensors").result[0]
    assert torch.equal(loaded.maps, saliency.maps) and loaded.names == saliency.names
    with pytest.raises(ValueError):
        SaveSaliency.execute(saliency=saliency, filename_prefix="../../escape")


def test_saliency_file_errors_name_the_right_folder_and_no_server_path(flux, concepts, comfy_dirs):
    import json

    import folder_paths
    from safetensors.torch import save_file

    base = str(comfy_dirs)
    for bad in ("../outside.safetensors", "/etc/passwd"):
        message = LoadSaliency.validate_inputs(file=bad)
        assert isinstance(message, str) and "input folder" in message and "output folder" not in message
        assert base not in message
        assert LoadSaliency.fingerprint_inputs(file=bad) == ""
        with pytest.raises(ConceptAttentionError, match="input folder") as info:
            LoadSaliency.execute(file=bad)
        assert base not in str(info.value)
    with pytest.raises(ConceptAttentionError, match="no file 'absent.safetensors' in the input folder") as info:
        LoadSaliency.execute(file="absent.safetensors")
    assert base not in str(info.value)

    # a crafted file: a few bytes claiming a 16384x16384 picture
    crafted = os.path.join(folder_paths.get_input_directory(), "crafted.safetensors")
    save_file({"maps": torch.ones(1, 1, 1, 1)}, crafted, metadata={
        "format": "concept_attention.saliency", "format_version": "1", "names": json.dumps(["dog"]),
        "image_size": json.dumps([16384, 16384]), "softmax": "true", "metadata": "{}"})
    with pytest.raises(ConceptAttentionError, match=r"'crafted.safetensors' is not a usable saliency file: its picture "
                                                     r"size \('image_size'\) 16384x16384 does not fit") as info:
        LoadSaliency.execute(file="crafted.safetensors")
    assert base not in str(info.value)

    saliency = _saliency(flux, concepts, latent={"samples": torch.randn(1, 16, 4, 4)}).result[0]
    with pytest.raises(ConceptAttentionError, match=r"is 300 bytes long; a folder name can have at most 255") as info:
        SaveSaliency.execute(saliency=saliency, filename_prefix="p" * 300 + "/maps")
    assert base not in str(info.value)
    with pytest.raises(ConceptAttentionError, match="outside the output folder") as info:
        SaveSaliency.execute(saliency=saliency, filename_prefix="../../escape")
    assert base not in str(info.value)


def test_stock_advanced_samplers_record_maps(flux, flux_clip, concepts):
    from comfy_extras.nodes_custom_sampler import BasicScheduler, CFGGuider, KSamplerSelect, RandomNoise, SamplerCustomAdvanced

    import nodes as comfy_nodes
    from concept_attention_tests.comfy.sampling import conditioning

    patched = ConceptAttentionPatch.execute(model=flux, concepts=concepts, layers="all", start_percent=0.0,
                                            end_percent=1.0, space="output", softmax=True).result[0]
    pos, neg = conditioning(flux_clip, "a dog"), conditioning(flux_clip, "")
    latent = {"samples": torch.zeros(1, 16, 6, 6)}

    def node(cls, **inputs):
        """First output of a stock node, V3 (ComfyUI 0.33) or V1 (0.3.x) style."""
        if hasattr(cls, "FUNCTION"):
            return getattr(cls(), cls.FUNCTION)(**inputs)[0]
        return cls.execute(**inputs).result[0]

    def custom_advanced(model):
        return node(SamplerCustomAdvanced, noise=node(RandomNoise, noise_seed=4),
                    guider=node(CFGGuider, model=model, positive=pos, negative=neg, cfg=2.0),
                    sampler=node(KSamplerSelect, sampler_name="euler"),
                    sigmas=node(BasicScheduler, model=model, scheduler="simple", steps=3, denoise=1.0),
                    latent_image=latent)

    def ksampler_advanced(model):
        return comfy_nodes.KSamplerAdvanced().sample(
            model, "enable", 5, 4, 2.0, "euler", "simple", pos, neg, latent, 0, 3, "enable")[0]

    for run in (custom_advanced, ksampler_advanced):
        plain, ours = run(flux), run(patched)
        assert torch.equal(plain["samples"], ours["samples"]), run.__name__
        maps = SamplingSaliency.execute(model=patched, latent=ours).result[0]
        assert maps.maps.shape == (1, 3, 3, 3) and torch.isfinite(maps.maps).all()
        # KSamplerAdvanced stopped after 3 of 4 steps: 3 conditional model calls were read
        assert maps.metadata["model_calls_used"] == 3, run.__name__


def test_a_requery_of_a_picture_runs_neither_the_vae_nor_the_model_and_says_so(flux, flux_clip, vae):
    """Concept-only changes on a picture given as IMAGE + VAE: the second run is a re-query, and its picture's
    latent is the one kept from the first run (the VAE ran once); the node shows which it was and how long it took."""
    from concept_attention.concept_patch.requery import cache as requery_cache

    requery_cache.CACHE.clear()
    image = torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(7))
    encodes = []
    original = vae.encode
    vae.encode = lambda pixels: encodes.append(pixels.shape) or original(pixels)
    try:
        first = _saliency(flux, ConceptList.execute(clip=flux_clip, concepts="dog, grass", pooling="mean").result[0],
                          image=image, vae=vae, requery_cache_mb=64)
        other = ConceptList.execute(clip=flux_clip, concepts="dog, sky, tree", pooling="mean").result[0]
        second = _saliency(flux, other, image=image, vae=vae, requery_cache_mb=64)
        off = _saliency(flux, other, image=image, vae=vae, requery_cache_mb=0)
    finally:
        del vae.encode
        requery_cache.CACHE.clear()
    assert first.result[0].metadata["requery"] is False and second.result[0].metadata["requery"] is True
    assert len(encodes) == 2  # the first run and the run without a cache; not the re-query
    assert first.ui["concept_run"][0].startswith("Model run: ") and first.ui["concept_run"][0].endswith(" s")
    assert second.ui["concept_run"][0].startswith("Re-query: ") and "(model not run)" in second.ui["concept_run"][0]
    assert off.ui["concept_run"][0].startswith("Model run: ")
