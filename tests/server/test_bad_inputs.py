"""SPEC section 7, bad input through a real server: every bad input gets an error that names the
actual problem, and the next valid prompt on the same server (same loaded models) succeeds.

Cases: no concepts, duplicate names, only empty names, a concept name not in the maps, too many
concepts, an unsupported model (a UNet), mismatched picture / saliency sizes, a sampling-saliency
node fed the wrong model or latent, and an interrupt in the middle of a patched sampling run after
which the same patched model gives exactly what a never-interrupted one gives.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from concept_attention_tests.server.workflows import (
    CONCEPTS,
    HEIGHT,
    WIDTH,
    empty_latent,
    error_text,
    ksampler_node,
    link,
    node,
    nodes_cached,
    nodes_executed,
    output_files,
    patch_node,
    prompt_nodes,
    read_latent,
    read_mask_png,
    require_ok,
    run_and_interrupt,
    saliency_file,
    saliency_node,
    sd3_loaders,
    to_mask_node,
    unique_prefix,
)

SUPPORTED_FAMILY_WORDS = ("Flux.1", "SD3")
_seeds = itertools.count(1000)


def encode_prompt(concepts: str = CONCEPTS, mask_concept: str = "dog", seed: int | None = None,
                  guide_size: tuple[int, int] | None = None) -> dict:
    """SD3 encode mode: Concept List -> Concept Saliency -> Saliency to Mask -> MaskToImage -> SaveImage.
    guide_size (width, height) adds an EmptyImage as the mask's guide picture."""
    prompt = {
        **sd3_loaders(concepts),
        "latent": empty_latent(),
        "saliency": saliency_node(seed=next(_seeds) if seed is None else seed),
        "mask": to_mask_node(concepts=mask_concept, image="guide" if guide_size else None),
        "mask_image": node("MaskToImage", mask=link("mask")),
        "save_mask": node("SaveImage", images=link("mask_image"), filename_prefix=unique_prefix("bad_inputs")),
    }
    if guide_size:
        prompt["guide"] = node("EmptyImage", width=guide_size[0], height=guide_size[1], batch_size=1, color=0x808080)
    return prompt


def assert_fails(server, prompt: dict, node_type: str, *phrases: str):
    result = server.run_prompt(prompt, timeout=180)
    assert result.status == "error", f"expected an execution error, got: {result.describe()}"
    assert result.error.get("node_type") == node_type, result.describe()
    message = error_text(result)
    for phrase in phrases:
        assert phrase in message, f"the error should mention {phrase!r}; it says: {message!r}"
    assert "Traceback" not in message
    return message


def assert_next_valid_prompt_works(server, must_run=("saliency", "mask", "save_mask"), **kwargs):
    """The valid version of the prompt runs to the end and saves a mask of the picture's size.
    must_run: nodes that have to execute (not come from the cache)."""
    result = require_ok(server.run_prompt(encode_prompt(**kwargs), timeout=180), server)
    assert set(must_run) <= nodes_executed(result), "the valid prompt must really run"
    [png] = output_files(server, result, "save_mask")
    assert read_mask_png(png).shape == (HEIGHT, WIDTH)


@pytest.mark.parametrize(
    "concepts, phrases",
    [
        pytest.param("", ("no concepts given",), id="no-concepts"),
        pytest.param(", ,\n ,", ("no concepts given",), id="only-empty-names"),
        pytest.param("dog, Dog", ("'Dog' is listed twice", "'dog'", "unique"), id="duplicate-names"),
        pytest.param("dog, grass\nsky, DOG ", ("'DOG' is listed twice", "'dog'"), id="duplicate-names-apart"),
        pytest.param(", ".join(f"thing{i}" for i in range(65)), ("65 concepts given", "at most 64"),
                     id="too-many-concepts"),
    ],
)
def test_bad_concept_list(comfy_server, concepts, phrases):
    assert_fails(comfy_server, encode_prompt(concepts=concepts), "ConceptAttentionConceptList", *phrases)
    assert_next_valid_prompt_works(comfy_server)


@pytest.mark.parametrize(
    "mask_concept, phrases",
    [
        pytest.param("cat", ("'cat' is not in these saliency maps", "dog, grass, sky"), id="unknown-name"),
        pytest.param("dog, cat", ("'cat' is not in these saliency maps",), id="one-unknown-of-two"),
        pytest.param("", ("choose one or more concept names", "dog, grass, sky"), id="no-name"),
    ],
)
def test_mask_concept_not_in_the_maps(comfy_server, mask_concept, phrases):
    seed = next(_seeds)
    assert_fails(comfy_server, encode_prompt(mask_concept=mask_concept, seed=seed),
                 "ConceptAttentionSaliencyToMask", *phrases)
    # the same maps (cached Concept Saliency) with a name from the list
    assert_next_valid_prompt_works(comfy_server, must_run=("mask", "save_mask"), seed=seed)


def test_unsupported_model_is_named_with_the_supported_families(comfy_server):
    unet = {"unet": node("ConceptAttentionTestTinyUNet", seed=3)}
    message = assert_fails(comfy_server, {**encode_prompt(), **unet}, "ConceptAttentionSaliency",
                           "dual-stream", "UNetModel", *SUPPORTED_FAMILY_WORDS)
    assert "Supported:" in message

    generation = {
        **sd3_loaders(), **unet, "latent": empty_latent(), **prompt_nodes(),
        "patch": patch_node(),
        "sampler": ksampler_node(model="patch", seed=1, steps=2),
        "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("sampler")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"),
                          filename_prefix=unique_prefix("unsupported")),
    }
    assert_fails(comfy_server, generation, "ConceptAttentionPatchModel", "UNetModel", *SUPPORTED_FAMILY_WORDS)
    assert_next_valid_prompt_works(comfy_server)


def test_mask_guide_image_of_another_size(comfy_server):
    seed = next(_seeds)
    assert_fails(comfy_server, encode_prompt(seed=seed, guide_size=(80, 48)), "ConceptAttentionSaliencyToMask",
                 "80x48", f"{WIDTH}x{HEIGHT}")
    assert_next_valid_prompt_works(comfy_server, must_run=("mask", "save_mask"), seed=seed,
                                   guide_size=(WIDTH, HEIGHT))


def test_saliency_image_and_latent_of_different_pictures(comfy_server):
    prompt = encode_prompt()
    prompt["other_picture"] = node("EmptyImage", width=WIDTH + 64, height=HEIGHT, batch_size=1, color=0)
    prompt["saliency"]["inputs"]["image"] = link("other_picture")
    assert_fails(comfy_server, prompt, "ConceptAttentionSaliency", f"{WIDTH + 64}x{HEIGHT}", f"{WIDTH}x{HEIGHT}")
    assert_next_valid_prompt_works(comfy_server)


def test_sampling_saliency_needs_the_patched_model_and_its_sampler_output(comfy_server):
    base = {
        **sd3_loaders(), "latent": empty_latent(), **prompt_nodes(),
        "patch": patch_node(),
        "sampler": ksampler_node(model="patch", seed=next(_seeds), steps=2),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"),
                          filename_prefix=unique_prefix("sampling_inputs")),
    }
    unpatched = {**base, "saliency": node("ConceptAttentionSamplingSaliency", model=link("unet"),
                                          latent=link("sampler"))}
    assert_fails(comfy_server, unpatched, "ConceptAttentionSamplingSaliency", "no ConceptAttention patch")
    not_sampled = {**base, "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"),
                                            latent=link("latent"))}
    assert_fails(comfy_server, not_sampled, "ConceptAttentionSamplingSaliency", "no sampling run")
    wrong_picture = {**base, "other_picture": node("EmptyImage", width=WIDTH, height=HEIGHT + 32, batch_size=1, color=0),
                     "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"),
                                      latent=link("sampler"), image=link("other_picture"))}
    assert_fails(comfy_server, wrong_picture, "ConceptAttentionSamplingSaliency",
                 f"{WIDTH}x{HEIGHT + 32}", f"{WIDTH}x{HEIGHT}")
    fixed = {**base, "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"),
                                      latent=link("sampler"))}
    result = require_ok(comfy_server.run_prompt(fixed, timeout=180), comfy_server)
    assert saliency_file(comfy_server, result, "save_maps").is_file()


def test_interrupt_mid_sampling_leaves_the_patched_model_reusable(comfy_server):
    """Interrupt a long patched KSampler run; the same patched model (cached node output, not
    re-created) then gives exactly the maps and latent of a patched model that was never
    interrupted, and the unpatched model still generates the same latent."""
    prefix = unique_prefix("interrupt")

    def short_run(patch_layers: str) -> dict:
        return {
            **sd3_loaders(), "latent": empty_latent(), **prompt_nodes(),
            "patch": patch_node(layers=patch_layers),
            "sampler": ksampler_node(model="patch", seed=5, steps=3),
            "plain_sampler": ksampler_node(model="unet", seed=5, steps=3),
            "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("sampler")),
            "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix),
            "save_latent": node("SaveLatent", samples=link("sampler"), filename_prefix=prefix + "_patched"),
            "save_plain": node("SaveLatent", samples=link("plain_sampler"), filename_prefix=prefix + "_plain"),
        }

    long_run = {
        **sd3_loaders(), **prompt_nodes(),
        "big_latent": empty_latent(width=512, height=512),
        "patch": patch_node(layers="all"),
        "long_sampler": ksampler_node(model="patch", latent="big_latent", seed=6, steps=400),
        "saliency": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("long_sampler")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix + "_long"),
    }
    interrupted, trigger = run_and_interrupt(comfy_server, long_run, "long_sampler", after_steps=2, timeout=180)
    assert trigger is not None, "the long sampler never reported progress"
    assert interrupted.status == "interrupted", interrupted.describe()
    assert "save_maps" not in interrupted.outputs

    after = require_ok(comfy_server.run_prompt(short_run("all"), timeout=180), comfy_server)
    assert "patch" in nodes_cached(after), "the follow-up must reuse the interrupted run's patched model"
    assert {"sampler", "saliency"} <= nodes_executed(after)

    # a patched model that never saw an interrupt: same layers spelled differently -> a new patch
    reference = require_ok(comfy_server.run_prompt(short_run("0-1"), timeout=180), comfy_server)
    assert "patch" in nodes_executed(reference)

    from concept_attention.concept_patch.files.load import load_saliency

    maps_after = load_saliency(str(saliency_file(comfy_server, after, "save_maps")))
    maps_reference = load_saliency(str(saliency_file(comfy_server, reference, "save_maps")))
    assert maps_after.names == maps_reference.names
    assert maps_after.metadata["layers"] == maps_reference.metadata["layers"] == [0, 1]
    assert maps_after.metadata["model_calls_used"] == maps_reference.metadata["model_calls_used"]
    assert torch.equal(maps_after.maps, maps_reference.maps), \
        f"max difference {(maps_after.maps - maps_reference.maps).abs().max():.3g}"

    latents = [read_latent(output_files(comfy_server, result, key, "latents")[0])
               for result, key in ((after, "save_latent"), (after, "save_plain"), (reference, "save_latent"))]
    assert torch.equal(latents[0], latents[1]), "after the interrupt the patched model must still generate exactly"
    assert torch.equal(latents[0], latents[2])


def test_interrupt_mid_encoding_leaves_the_model_unpatched(comfy_server):
    """Interrupt Concept Saliency mid-encode (at its first progress step: one block of the first noise sample); the
    loaded model then gives exactly the maps it gives when nothing was interrupted, and samples as before."""
    prefix = unique_prefix("interrupt_encode")
    long_run = {
        **sd3_loaders(),
        "big_latent": empty_latent(width=512, height=512),
        "saliency": saliency_node(latent="big_latent", seed=1, samples=64),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix + "_long"),
    }
    interrupted, trigger = run_and_interrupt(comfy_server, long_run, "saliency", after_steps=1, timeout=180)
    assert trigger is not None, "Concept Saliency never reported progress"
    assert interrupted.status == "interrupted", interrupted.describe()

    def short_run(layers: str) -> dict:
        return {
            **sd3_loaders(), "latent": empty_latent(),
            "saliency": saliency_node(seed=77, samples=2, layers=layers),
            "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"), filename_prefix=prefix),
        }

    # "all" and "0-1" are the same two blocks, spelled differently so neither run comes from the cache
    after = require_ok(comfy_server.run_prompt(short_run("all"), timeout=180), comfy_server)
    reference = require_ok(comfy_server.run_prompt(short_run("0-1"), timeout=180), comfy_server)
    assert "saliency" in nodes_executed(after) and "saliency" in nodes_executed(reference)

    from concept_attention.concept_patch.files.load import load_saliency

    maps_after = load_saliency(str(saliency_file(comfy_server, after, "save_maps")))
    maps_reference = load_saliency(str(saliency_file(comfy_server, reference, "save_maps")))
    assert torch.equal(maps_after.maps, maps_reference.maps), \
        f"max difference {(maps_after.maps - maps_reference.maps).abs().max():.3g}"
