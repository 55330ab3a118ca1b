"""Whole workflows queued over HTTP on a real ComfyUI server, with stock nodes around the pack's.

Models: a tiny SD3 file read by the stock UNETLoader and a random CLIP-L read by the stock
CLIPLoader (type sd3), both written at test time (tests/server/model_files.py); a tiny Flux.1 and
its text encoder from the test-only fixture pack; a tiny Flux.2 Klein 4B file read by the stock
UNETLoader with the tiny Klein (Qwen3) text encoder of the fixture pack; a tiny Qwen-Image and its
Qwen2.5-VL text encoder from the fixture pack (ComfyUI builds every Qwen-Image file at full width, so
no small file passes the stock UNETLoader). The checks read what the output nodes wrote
into the server's output folder and recompute the expected masks from the saved maps with the
pack's own mask code, so a mask that is merely the right size but means something else fails.
"""

from __future__ import annotations

import numpy as np
import torch

from concept_attention_tests.server.workflows import (
    CONCEPT_NAMES,
    GRID,
    HEIGHT,
    WIDTH,
    check_patched_is_plain,
    empty_flux2_latent,
    empty_latent,
    empty_wan_image_latent,
    flux_loaders,
    klein_loaders,
    ksampler_node,
    link,
    mask_as_png_values,
    node,
    nodes_executed,
    output_files,
    patch_node,
    patched_and_plain_samplers,
    prompt_nodes,
    qwen_image_loaders,
    read_latent,
    read_mask_png,
    require_ok,
    saliency_file,
    saliency_node,
    sd3_loaders,
    to_mask_node,
    unique_prefix,
)

GROW_PIXELS = 3


def _load_saliency(path):
    from concept_attention.concept_patch.files.load import load_saliency

    return load_saliency(str(path))


def _check_maps(saliency, family: str):
    assert saliency.names == CONCEPT_NAMES
    assert tuple(saliency.image_size) == (HEIGHT, WIDTH)
    assert tuple(saliency.maps.shape) == (1, len(CONCEPT_NAMES), *GRID)
    assert saliency.softmax is True
    assert torch.isfinite(saliency.maps).all()
    assert torch.allclose(saliency.maps.sum(dim=1), torch.ones(1, *GRID), atol=1e-5), "softmax maps must sum to 1"
    assert saliency.metadata.get("model_family") == family, saliency.metadata


def test_sd3_encode_mode_mask_drives_inpainting(comfy_server):
    """Stock loaders -> Concept List -> Concept Saliency (latent in) -> Saliency to Mask -> GrowMask
    -> SetLatentNoiseMask -> KSampler, and the mask saved as a PNG that means what the maps say."""
    prefix = unique_prefix("sd3_encode")
    prompt = {
        **sd3_loaders(),
        "latent": empty_latent(),
        "saliency": saliency_node(seed=7, layers="all"),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix + "_maps"),
        "mask": to_mask_node(concepts="dog", method="relative_mean"),
        "grow": node("GrowMask", mask=link("mask"), expand=GROW_PIXELS, tapered_corners=True),
        "noise_mask": node("SetLatentNoiseMask", samples=link("latent"), mask=link("grow")),
        **prompt_nodes(),
        "sampler": ksampler_node(latent="noise_mask", seed=3, steps=3),
        "save_latent": node("SaveLatent", samples=link("sampler"), filename_prefix=prefix + "_latent"),
        "mask_image": node("MaskToImage", mask=link("grow")),
        "save_mask": node("SaveImage", images=link("mask_image"), filename_prefix=prefix + "_mask"),
    }
    result = require_ok(comfy_server.run_prompt(prompt, timeout=240), comfy_server)

    # the maps the workflow saved
    saliency = _load_saliency(saliency_file(comfy_server, result, "save_maps"))
    _check_maps(saliency, "SD3/SD3.5")
    assert saliency.metadata["layers"] == [0, 1]

    # the mask picture: binary, at the picture's size, and exactly the saved maps' "dog" mask grown
    [mask_png] = output_files(comfy_server, result, "save_mask")
    pixels = read_mask_png(mask_png)
    assert pixels.shape == (HEIGHT, WIDTH)
    assert set(np.unique(pixels).tolist()) == {0, 255}, "the mask must be binary and not empty or full"

    from comfy_extras.nodes_mask import GrowMask

    from concept_attention.concept_patch.maps.masks import saliency_to_mask

    thresholded = saliency_to_mask(saliency, "dog", method="relative_mean")
    grown = GrowMask.execute(thresholded, GROW_PIXELS, True).result[0]
    assert not torch.equal(grown, thresholded), "grow should change a mask that is neither empty nor full"
    np.testing.assert_array_equal(pixels, mask_as_png_values(grown))

    # the mask drove the inpainting: outside it the latent keeps the empty picture, inside it changed
    import comfy.utils

    latent = read_latent(output_files(comfy_server, result, "save_latent", "latents")[0])
    assert tuple(latent.shape) == (1, 16, HEIGHT // 8, WIDTH // 8)
    noise_mask = comfy.utils.reshape_mask(grown, latent.shape)[0, 0]
    keep, repaint = noise_mask == 0, noise_mask == 1
    assert keep.any() and repaint.any(), "the latent-size mask should have both kept and repainted cells"
    kept = latent[0][:, keep]
    assert torch.allclose(kept, kept[:, :1].expand_as(kept), atol=1e-6), "cells outside the mask must stay empty"
    assert not torch.allclose(latent[0][:, repaint], kept[:, :1].expand(-1, int(repaint.sum())), atol=1e-3), \
        "cells inside the mask must have been generated"


def test_sd3_generation_mode_maps_follow_the_seed(comfy_server):
    """Concept Attention (Generation) -> stock KSampler -> Concept Saliency from Sampling -> Save
    Saliency; queued again with another seed, the new run gives new maps in a new file."""
    prefix = unique_prefix("sd3_generation")

    def prompt(seed):
        return {
            **sd3_loaders(),
            "latent": empty_latent(),
            **prompt_nodes(),
            "patch": patch_node(layers="all"),
            "sampler": ksampler_node(model="patch", seed=seed, steps=3),
            "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("sampler")),
            "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix),
        }

    first = require_ok(comfy_server.run_prompt(prompt(101), timeout=240), comfy_server)
    second = require_ok(comfy_server.run_prompt(prompt(202), timeout=240), comfy_server)

    first_path = saliency_file(comfy_server, first, "save_maps")
    second_path = saliency_file(comfy_server, second, "save_maps")
    assert first_path != second_path, "each run must write its own maps file"
    maps = []
    for path in (first_path, second_path):
        saliency = _load_saliency(path)
        _check_maps(saliency, "SD3/SD3.5")
        assert saliency.metadata["model_calls_used"] >= 3, saliency.metadata
        maps.append(saliency.maps)
    assert not torch.allclose(maps[0], maps[1], atol=1e-4), "another seed must give other maps"


def test_flux_generation_mode_argmax_masks(comfy_server):
    """Tiny Flux.1 dev: CLIPTextEncode + FluxGuidance + KSampler on the patched model, Concept Saliency
    from Sampling, one argmax mask per concept saved as PNG. The patched model generates the same
    latent as the plain one, and the three argmax masks partition the picture."""
    prompts = {
        "text": node("CLIPTextEncode", clip=link("clip"), text="a dog on the grass under the sky"),
        "positive": node("FluxGuidance", conditioning=link("text"), guidance=3.5),
        "negative": node("ConditioningZeroOut", conditioning=link("text")),
    }
    prompt = _generation_graph(unique_prefix("flux_generation"), flux_loaders(), empty_latent(), prompts, 4, 1.0)
    saliency = _check_generation(comfy_server, prompt, "Flux.1")
    assert saliency.metadata["layers"] == [0, 1, 2]


def test_flux2_klein_encode_mode_mask_drives_inpainting(comfy_server):
    """Flux.2 Klein 4B through the stock UNETLoader (tiny file) and the tiny Klein text encoder:
    Concept List -> Concept Saliency (Flux.2 latent in) -> Saliency to Mask -> SetLatentNoiseMask ->
    KSampler. The maps are Flux.2's, the saved mask is exactly the saved maps' mask, and only the
    latent cells inside it are generated."""
    saliency, expected, latent = _encode_inpainting(comfy_server, "klein_encode", klein_loaders(),
                                                    empty_flux2_latent(), cfg=1.0, family="Flux.2")
    assert saliency.metadata["layers"] == [0, 1], saliency.metadata  # the file's 2 double blocks

    import comfy.utils

    assert tuple(latent.shape) == (1, 128, HEIGHT // 16, WIDTH // 16)
    noise_mask = comfy.utils.reshape_mask(expected, latent.shape)[0, 0]
    keep, repaint = noise_mask == 0, noise_mask == 1
    assert keep.any() and repaint.any(), "the latent-size mask should have both kept and repainted cells"
    assert latent[0][:, keep].abs().max() < 1e-6, "cells outside the mask must keep the empty latent"
    assert latent[0][:, repaint].abs().max() > 1e-3, "cells inside the mask must have been generated"


def test_flux2_klein_generation_mode_argmax_masks(comfy_server):
    """Flux.2 Klein 4B: CLIPTextEncode + KSampler on the patched model, Concept Saliency from Sampling,
    an argmax mask per concept. The patched model generates exactly the plain model's latent, and
    the argmax masks partition the picture."""
    prompt = _generation_graph(unique_prefix("klein_generation"), klein_loaders(), empty_flux2_latent(), prompt_nodes(),
                               3, 1.0)
    saliency = _check_generation(comfy_server, prompt, "Flux.2", latent_shape=(1, 128, HEIGHT // 16, WIDTH // 16))
    assert saliency.metadata["layers"] == [0, 1], saliency.metadata
    assert saliency.metadata["model_calls_used"] >= 3, saliency.metadata


def test_qwen_image_encode_mode_mask_drives_inpainting(comfy_server):
    """Qwen-Image (tiny model and Qwen2.5-VL text encoder): Concept List -> Concept Saliency (a one-frame
    Wan latent [1, 16, 1, h, w], as VAEEncode gives it) -> Saliency to Mask -> SetLatentNoiseMask ->
    KSampler. The maps are Qwen-Image's, the saved mask is exactly the saved maps' mask, and only the
    latent cells inside it are generated."""
    saliency, expected, latent = _encode_inpainting(comfy_server, "qwen_encode", qwen_image_loaders(),
                                                    empty_wan_image_latent(), cfg=2.0, family="Qwen-Image")
    assert saliency.metadata["layers"] == [0, 1, 2], saliency.metadata  # the model's 3 blocks
    assert saliency.metadata["mode"] == "encode", saliency.metadata

    import comfy.latent_formats
    import comfy.utils

    assert tuple(latent.shape) == (1, 16, 1, HEIGHT // 8, WIDTH // 8)
    noise_mask = comfy.utils.reshape_mask(expected, latent.shape)[0, 0, 0]
    keep, repaint = noise_mask == 0, noise_mask == 1
    assert keep.any() and repaint.any(), "the latent-size mask should have both kept and repainted cells"
    # The sampler leaves an empty latent unshifted going in but shifts its result out of the Wan 2.1
    # latent space: kept cells hold what the empty latent becomes there (the per-channel latent mean).
    empty = comfy.latent_formats.Wan21().process_out(torch.zeros(1, 16, 1, 1, 1)).reshape(16)
    kept, generated = latent[0, :, 0][:, keep], latent[0, :, 0][:, repaint]
    assert torch.allclose(kept, empty[:, None].expand_as(kept), atol=1e-5), \
        "cells outside the mask must keep the empty latent"
    assert not torch.allclose(generated, empty[:, None].expand_as(generated), atol=1e-3), \
        "cells inside the mask must have been generated"


def test_qwen_image_generation_mode_argmax_masks(comfy_server):
    """Qwen-Image: CLIPTextEncode + KSampler (cfg 2: a cond and an uncond row) on the patched model from
    EmptySD3LatentImage, as ComfyUI's Qwen-Image template starts; Concept Saliency from Sampling, an
    argmax mask per concept. The patched model generates exactly the plain model's latent, and the
    argmax masks partition the picture."""
    prompt = _generation_graph(unique_prefix("qwen_generation"), qwen_image_loaders(), empty_latent(), prompt_nodes(),
                               3, 2.0)
    # the samplers make the 4-D latent one Wan frame
    saliency = _check_generation(comfy_server, prompt, "Qwen-Image", latent_shape=(1, 16, 1, HEIGHT // 8, WIDTH // 8))
    assert saliency.metadata["layers"] == [0, 1, 2], saliency.metadata
    assert saliency.metadata["model_calls_used"] >= 3, saliency.metadata


def test_new_concepts_on_the_same_picture_are_a_requery(comfy_server):
    """Two prompts that differ only in the Concept List text: the second runs only the concept stream over what
    the first recorded (its saved maps say so), and gives the maps a full run (cache off) gives."""
    def prompt(concepts: str, cache_mb: int, tag: str) -> dict:
        return {
            **sd3_loaders(concepts=concepts),
            "latent": empty_latent(),
            "saliency": saliency_node(seed=11, layers="all", requery_cache_mb=cache_mb),
            "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"),
                              filename_prefix=unique_prefix("requery_" + tag)),
        }

    def maps_of(result):
        return _load_saliency(saliency_file(comfy_server, result, "save_maps"))

    first = maps_of(require_ok(comfy_server.run_prompt(prompt("dog, grass, sky", 256, "a"), timeout=240), comfy_server))
    second_result = require_ok(comfy_server.run_prompt(prompt("dog, collar, sky", 256, "b"), timeout=240), comfy_server)
    assert {"concepts", "saliency"} <= nodes_executed(second_result)
    second = maps_of(second_result)
    assert first.metadata["requery"] is False
    assert second.metadata["requery"] is True
    assert second.names == ["dog", "collar", "sky"]
    full = maps_of(require_ok(comfy_server.run_prompt(prompt("dog, collar, sky", 0, "c"), timeout=240), comfy_server))
    assert full.metadata["requery"] is False
    assert torch.equal(second.maps, full.maps)


def test_qwen_image_edit_2511_with_a_reference_picture(comfy_server):
    """Qwen-Image-Edit 2511 (index_timestep_zero: the reference picture's tokens get timestep-0 rows) with
    the stock ReferenceLatent edit conditioning, into Concept Saliency (encode mode) and into KSampler on
    the patched model. The patched model generates exactly the plain model's latent, and both kinds of
    maps are of the edited picture's token grid only, whatever the reference adds to the sequence."""
    prefix = unique_prefix("qwen_edit")
    prompt = {
        **qwen_image_loaders(edit_2511=True),
        "latent": empty_wan_image_latent(),
        "text": node("CLIPTextEncode", clip=link("clip"), text="make the dog a red fox"),
        "positive": node("ReferenceLatent", conditioning=link("text"), latent=link("latent")),
        "negative": node("ConditioningZeroOut", conditioning=link("positive")),
        "saliency": saliency_node(seed=5, layers="all", conditioning=link("positive")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix + "_encode"),
        # the same without the reference picture: the reference must reach the model and change the maps
        "text_only_saliency": saliency_node(seed=5, layers="all", conditioning=link("text")),
        "save_text_only_maps": node("ConceptAttentionSaveSaliency", saliency=link("text_only_saliency"),
                                    filename_prefix=prefix + "_text_only"),
        **patched_and_plain_samplers(prefix, seed=11),
        "sampling_saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("sampler")),
        "save_sampling_maps": node("ConceptAttentionSaveSaliency", saliency=link("sampling_saliency"),
                                   filename_prefix=prefix + "_sampling"),
    }
    result = require_ok(comfy_server.run_prompt(prompt, timeout=240), comfy_server)

    check_patched_is_plain(comfy_server, result, (1, 16, 1, HEIGHT // 8, WIDTH // 8))

    encoded = _load_saliency(saliency_file(comfy_server, result, "save_maps"))
    _check_maps(encoded, "Qwen-Image")
    assert encoded.metadata["mode"] == "encode" and encoded.metadata["layers"] == [0, 1, 2], encoded.metadata
    text_only = _load_saliency(saliency_file(comfy_server, result, "save_text_only_maps"))
    _check_maps(text_only, "Qwen-Image")
    assert not torch.allclose(encoded.maps, text_only.maps, atol=1e-4), "the reference picture must change the maps"
    sampled = _load_saliency(saliency_file(comfy_server, result, "save_sampling_maps"))
    _check_maps(sampled, "Qwen-Image")
    assert sampled.metadata["model_calls_used"] >= 3, sampled.metadata


def _encode_inpainting(comfy_server, tag: str, loaders: dict, latent: dict, cfg: float, family: str):
    """Concept List -> Concept Saliency -> Saliency to Mask -> SetLatentNoiseMask -> KSampler with `loaders`, run;
    the saved maps are `family`'s and the saved mask is exactly their "dog" mask. Returns the maps, that mask and
    the sampled latent."""
    prefix = unique_prefix(tag)
    prompt = {
        **loaders,
        "latent": latent,
        "saliency": saliency_node(seed=5, layers="all"),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix + "_maps"),
        "mask": to_mask_node(concepts="dog", method="relative_mean"),
        "noise_mask": node("SetLatentNoiseMask", samples=link("latent"), mask=link("mask")),
        **prompt_nodes(text="a red fox on the grass under the sky"),
        "sampler": ksampler_node(latent="noise_mask", seed=3, steps=3, cfg=cfg),
        "save_latent": node("SaveLatent", samples=link("sampler"), filename_prefix=prefix + "_latent"),
        "mask_image": node("MaskToImage", mask=link("mask")),
        "save_mask": node("SaveImage", images=link("mask_image"), filename_prefix=prefix + "_mask"),
    }
    result = require_ok(comfy_server.run_prompt(prompt, timeout=240), comfy_server)

    saliency = _load_saliency(saliency_file(comfy_server, result, "save_maps"))
    _check_maps(saliency, family)

    from concept_attention.concept_patch.maps.masks import saliency_to_mask

    expected = saliency_to_mask(saliency, "dog", method="relative_mean")
    [mask_png] = output_files(comfy_server, result, "save_mask")
    pixels = read_mask_png(mask_png)
    assert pixels.shape == (HEIGHT, WIDTH)
    assert set(np.unique(pixels).tolist()) == {0, 255}, "the mask must be binary and not empty or full"
    np.testing.assert_array_equal(pixels, mask_as_png_values(expected))
    return saliency, expected, read_latent(output_files(comfy_server, result, "save_latent", "latents")[0])


def _generation_graph(prefix: str, loaders: dict, latent: dict, prompts: dict, steps: int, cfg: float) -> dict:
    """Patch node + KSampler next to a plain KSampler with the same seed, Concept Saliency from Sampling, Save
    Saliency, and one argmax mask per concept saved as a PNG."""
    prompt = {
        **loaders,
        "latent": latent,
        **prompts,
        **patched_and_plain_samplers(prefix, seed=11, steps=steps, cfg=cfg),
        "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("sampler")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix + "_maps"),
    }
    for name in CONCEPT_NAMES:
        prompt[f"mask_{name}"] = to_mask_node(concepts=name, method="argmax")
        prompt[f"image_{name}"] = node("MaskToImage", mask=link(f"mask_{name}"))
        prompt[f"save_{name}"] = node("SaveImage", images=link(f"image_{name}"), filename_prefix=f"{prefix}_{name}")
    return prompt


def _check_generation(comfy_server, prompt: dict, family: str, latent_shape=None):
    """Runs a _generation_graph: the patched latent is the plain one bit for bit, the maps are the family's, and
    the argmax masks are the saved maps' and partition the picture with more than one winner. The maps."""
    from concept_attention.concept_patch.maps.masks import saliency_to_mask

    result = require_ok(comfy_server.run_prompt(prompt, timeout=240), comfy_server)
    check_patched_is_plain(comfy_server, result, latent_shape)

    saliency = _load_saliency(saliency_file(comfy_server, result, "save_maps"))
    _check_maps(saliency, family)
    total = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    for name in CONCEPT_NAMES:
        [png] = output_files(comfy_server, result, f"save_{name}")
        pixels = read_mask_png(png)
        assert pixels.shape == (HEIGHT, WIDTH)
        assert set(np.unique(pixels).tolist()) <= {0, 255}
        expected = mask_as_png_values(saliency_to_mask(saliency, name, method="argmax"))
        np.testing.assert_array_equal(pixels, expected, err_msg=f"argmax mask of {name!r}")
        total += pixels
    assert (total == 255).all(), "argmax masks of all concepts must partition the picture"
    winners = {name for name in CONCEPT_NAMES if saliency_to_mask(saliency, name, method="argmax").any()}
    assert len(winners) >= 2, f"random maps should have more than one winning concept, got {winners}"
    return saliency
