"""Hostile and out-of-range inputs through a real server (issue 15): each is refused with a message
that says what was wrong and what is accepted, never a raw Python exception or a server path, and
the server goes on working.

Cases: a crafted saliency file (a few hundred bytes claiming a 16384x16384 picture, which once drove
a server past 6 GiB; deeply nested JSON), Load Saliency paths outside the input folder, a seed whose
samples run past the largest seed, a picture larger than SD3's position table, and a Save Saliency
folder name longer than a file system takes.
"""

from __future__ import annotations

import json
import uuid

import pytest
import torch
from safetensors.torch import save_file

from concept_attention_tests.server.workflows import (
    HEIGHT,
    WIDTH,
    empty_latent,
    error_text,
    link,
    node,
    output_files,
    read_mask_png,
    require_ok,
    saliency_node,
    sd3_loaders,
    to_mask_node,
    unique_prefix,
)

TOP_SEED = 0xFFFFFFFFFFFFFFFF


def _saliency_metadata(names, image_size, overrides=None) -> dict:
    meta = {"format": "concept_attention.saliency", "format_version": "1", "names": json.dumps(names),
            "image_size": json.dumps(image_size), "softmax": "true", "metadata": "{}"}
    meta.update(overrides or {})
    return meta


def _saliency(**kwargs) -> dict:
    """Concept Saliency on the tiny SD3 (an input a later ComfyUI version ignores is harmless)."""
    return saliency_node(requery_cache_mb=-1, **kwargs)


def _write_input_file(server, maps: torch.Tensor, metadata: dict) -> str:
    name = f"crafted_{uuid.uuid4().hex[:8]}.safetensors"
    save_file({"maps": maps}, str(server.input_dir / name), metadata=metadata)
    return name


def _load_to_preview(file_name: str, concept: str = "dog") -> dict:
    """Load Saliency -> Saliency to Mask -> MaskToImage -> PreviewImage (the chain of the 6 GiB run)."""
    return {
        "load": node("ConceptAttentionLoadSaliency", file=file_name),
        "mask": to_mask_node(saliency="load", concepts=concept),
        "mask_image": node("MaskToImage", mask=link("mask")),
        "preview": node("PreviewImage", images=link("mask_image")),
    }


def _assert_clear(server, result, node_type: str, *phrases: str) -> str:
    assert result.status == "error", result.describe()
    assert result.error.get("node_type") == node_type, result.describe()
    message = error_text(result)
    for phrase in phrases:
        assert phrase in message, f"the error should mention {phrase!r}; it says: {message!r}"
    # the pack's error by a fixed name: ComfyUI names modules by their folder, which is no client's business
    assert result.error.get("exception_type") == "concept_attention.errors.ConceptAttentionError", result.describe()
    assert str(server.base_dir) not in message and "Traceback" not in message, message
    assert server.alive()
    return message


@pytest.mark.parametrize("maps_shape, names, image_size, overrides, phrases", [
    pytest.param((1, 1, 1, 1), ["dog"], [16384, 16384], {},
                 ("picture size ('image_size') 16384x16384 does not fit its 1x1 map grid",), id="claims-huge-picture"),
    pytest.param((1, 1, 1, 1), ["dog"], [16, 16], {"names": "[" * 20000 + "]" * 20000},
                 ("'names' field", "nests deeper than 16"), id="deep-json"),
    pytest.param((1, 0, 1, 1), [], [16, 16], {}, ("concept names ('names') number 0; 1 to 64",), id="no-concepts"),
    pytest.param((1, 1, 16, 32, 32), ["dog"], [1024, 1024], {"frames": "256"},
                 ("268,435,456 pixels in all", "at most 134,217,728"), id="claims-a-1-GiB-mask"),
])
def test_crafted_saliency_file_is_refused_and_the_server_goes_on(comfy_server, maps_shape, names, image_size,
                                                                overrides, phrases):
    maps = torch.ones(maps_shape) if min(maps_shape) else torch.zeros(maps_shape)
    crafted = _write_input_file(comfy_server, maps, _saliency_metadata(names, image_size, overrides))
    result = comfy_server.run_prompt(_load_to_preview(crafted), timeout=120)
    _assert_clear(comfy_server, result, "ConceptAttentionLoadSaliency", repr(crafted), *phrases)

    # a sound file through the same chain
    good = _write_input_file(comfy_server, torch.rand(1, 2, 4, 6).softmax(1),
                             _saliency_metadata(["dog", "sky"], [HEIGHT, WIDTH]))
    prompt = _load_to_preview(good)
    prompt["save"] = node("SaveImage", images=link("mask_image"), filename_prefix=unique_prefix("hostile"))
    result = require_ok(comfy_server.run_prompt(prompt, timeout=120), comfy_server)
    [png] = output_files(comfy_server, result, "save")
    assert read_mask_png(png).shape == (HEIGHT, WIDTH)


@pytest.mark.parametrize("file_name", ["../outside.safetensors", "/etc/passwd"])
def test_load_saliency_path_outside_the_input_folder(comfy_server, file_name):
    result = comfy_server.run_prompt(_load_to_preview(file_name), timeout=60)
    assert result.status == "rejected", result.describe()
    message = json.dumps(result.error)
    assert "input folder" in message and "output folder" not in message, message
    assert str(comfy_server.base_dir) not in message


def test_load_saliency_of_a_missing_file(comfy_server):
    result = comfy_server.run_prompt(_load_to_preview("absent_file.safetensors"), timeout=60)
    if result.status == "rejected":  # not in the list of files: ComfyUI's own validation says so
        message = json.dumps(result.error)
    else:
        message = _assert_clear(comfy_server, result, "ConceptAttentionLoadSaliency", "input folder")
    assert "absent_file.safetensors" in message and str(comfy_server.base_dir) not in message


def test_seed_whose_samples_run_past_the_largest_seed(comfy_server):
    prompt = {**sd3_loaders(), "latent": empty_latent(),
              "saliency": _saliency(seed=TOP_SEED, samples=2),
              "save": node("ConceptAttentionSaveSaliency", saliency=link("saliency"),
                           filename_prefix=unique_prefix("seed"))}
    result = comfy_server.run_prompt(prompt, timeout=120)
    _assert_clear(comfy_server, result, "ConceptAttentionSaliency", "runs past the largest seed",
                  f"at most {TOP_SEED - 1}")
    prompt["saliency"] = _saliency(seed=TOP_SEED - 1, samples=2)
    require_ok(comfy_server.run_prompt(prompt, timeout=120), comfy_server)


def test_picture_too_large_for_the_sd3_position_table(comfy_server):
    # the tiny SD3 file's position table is 64 patches of 2 latent cells: at most 1024 px a side
    prompt = {**sd3_loaders(), "latent": empty_latent(width=1040, height=64),
              "saliency": _saliency(),
              "save": node("ConceptAttentionSaveSaliency", saliency=link("saliency"),
                           filename_prefix=unique_prefix("large"))}
    result = comfy_server.run_prompt(prompt, timeout=120)
    _assert_clear(comfy_server, result, "ConceptAttentionSaliency", "1040x64 pixels",
                  "this model takes at most 1024x1024")


def test_save_saliency_folder_name_too_long(comfy_server):
    prompt = {**sd3_loaders(), "latent": empty_latent(), "saliency": _saliency(seed=3),
              "save": node("ConceptAttentionSaveSaliency", saliency=link("saliency"),
                           filename_prefix="f" * 300 + "/maps")}
    result = comfy_server.run_prompt(prompt, timeout=120)
    _assert_clear(comfy_server, result, "ConceptAttentionSaveSaliency", "is 300 bytes long",
                  "a folder name can have at most 255")
