"""API-format workflow pieces and result readers for the server tier's workflow tests.

Import as ``concept_attention_tests.server.workflows``. Node ids in the prompts are short names
("unet", "concepts", ...) so the tests can find each node's outputs in the /history entry.
Models come from the stock loaders (tiny files written by tests/server/model_files.py: SD3 and
Flux.2 Klein) or, for Flux.1, Qwen-Image, the text encoders the stock loaders cannot make small and
the unsupported UNet, from the test-only fixture pack
(tests/server/fixture_nodes/concept_attention_test_nodes).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import torch

from concept_attention_tests.server.comfy_server import ComfyServer, PromptResult
from concept_attention_tests.server.model_files import CLIP_L_FILE, FLUX2_KLEIN_FILE, SD3_FILE

CONCEPTS = "dog, grass, sky"
CONCEPT_NAMES = ["dog", "grass", "sky"]
# A non-square picture: 96 px wide, 64 px high -> latent 12x8 -> token grid 6x4 (patch size 2); on
# Flux.2 latent 6x4 (16 px a cell) -> the same token grid (patch size 1).
WIDTH, HEIGHT = 96, 64
GRID = (HEIGHT // 16, WIDTH // 16)


def link(node_id: str, index: int = 0) -> list:
    return [node_id, index]


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


# ---------------------------------------------------------------------------------------------
# workflow pieces
# ---------------------------------------------------------------------------------------------


def sd3_loaders(concepts: str = CONCEPTS) -> dict:
    """unet (stock UNETLoader), clip (stock CLIPLoader, type sd3), concepts (Concept List)."""
    return {
        "unet": node("UNETLoader", unet_name=SD3_FILE, weight_dtype="default"),
        "clip": node("CLIPLoader", clip_name=CLIP_L_FILE, type="sd3", device="default"),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=concepts, pooling="mean"),
    }


# Random tiny models tend to favour one concept everywhere; with these weights (model seed 2, text
# encoder seed 1) every concept of CONCEPTS wins somewhere in the Flux workflow's argmax maps.
FLUX_MODEL_SEED = 2


def flux_loaders(concepts: str = CONCEPTS, model_seed: int = FLUX_MODEL_SEED) -> dict:
    """unet (tiny Flux.1 dev), clip (tiny Flux CLIP-L + T5), concepts (Concept List)."""
    return {
        "unet": node("ConceptAttentionTestTinyFlux", seed=model_seed),
        "clip": node("ConceptAttentionTestTinyFluxClip", seed=1),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=concepts, pooling="mean"),
    }


# With these text-encoder weights (and the model file's seed 0) more than one concept of CONCEPTS wins
# somewhere in the Klein generation workflow's argmax maps.
KLEIN_CLIP_SEED = 16


def klein_loaders(concepts: str = CONCEPTS, clip_seed: int = KLEIN_CLIP_SEED) -> dict:
    """unet (stock UNETLoader: the tiny Flux.2 Klein 4B file), clip (tiny Klein Qwen3 text encoder from
    the fixture pack), concepts (Concept List)."""
    return {
        "unet": node("UNETLoader", unet_name=FLUX2_KLEIN_FILE, weight_dtype="default"),
        "clip": node("ConceptAttentionTestTinyKleinClip", variant="4b", seed=clip_seed),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=concepts, pooling="mean"),
    }


# With these weights (tiny Qwen-Image seed 2, its text encoder seed 3) more than one concept of CONCEPTS wins
# somewhere in the Qwen-Image generation workflow's argmax maps.
QWEN_IMAGE_MODEL_SEED, QWEN_IMAGE_CLIP_SEED = 2, 3


def qwen_image_loaders(concepts: str = CONCEPTS, model_seed: int = QWEN_IMAGE_MODEL_SEED,
                       clip_seed: int = QWEN_IMAGE_CLIP_SEED, edit_2511: bool = False) -> dict:
    """unet (tiny Qwen-Image, or Qwen-Image-Edit 2511, from the fixture pack: ComfyUI builds every
    Qwen-Image file at full width), clip (tiny Qwen2.5-VL text encoder, as CLIPLoader type qwen_image
    makes), concepts (Concept List)."""
    return {
        "unet": node("ConceptAttentionTestTinyQwenImage", seed=model_seed, edit_2511=edit_2511),
        "clip": node("ConceptAttentionTestTinyQwenImageClip", seed=clip_seed),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=concepts, pooling="mean"),
    }


def empty_latent(width: int = WIDTH, height: int = HEIGHT) -> dict:
    return node("EmptySD3LatentImage", width=width, height=height, batch_size=1)


def empty_flux2_latent(width: int = WIDTH, height: int = HEIGHT) -> dict:
    """Flux.2's latent: 128 channels, 16 px a cell."""
    return node("EmptyFlux2LatentImage", width=width, height=height, batch_size=1)


def empty_wan_image_latent(width: int = WIDTH, height: int = HEIGHT) -> dict:
    """A one-frame latent of the Wan 2.1 VAE that Qwen-Image uses, [1, 16, 1, H/8, W/8]: the shape a
    VAEEncode of a picture gives (EmptySD3LatentImage's [1, 16, H/8, W/8] becomes it only inside the
    samplers)."""
    return node("EmptyHunyuanLatentVideo", width=width, height=height, length=1, batch_size=1)


def saliency_node(model="unet", concepts="concepts", latent="latent", seed: int = 0, layers: str = "all",
                  samples: int = 1, **extra) -> dict:
    inputs = dict(model=link(model), concepts=link(concepts), latent=link(latent), layers=layers,
                  noise_level=0.5, samples=samples, seed=seed, space="output", softmax=True,
                  concept_self_attention=True, concept_cross_attention=True)
    inputs.update(extra)
    return node("ConceptAttentionSaliency", **inputs)


def patch_node(model="unet", concepts="concepts", layers: str = "all") -> dict:
    return node("ConceptAttentionPatchModel", model=link(model), concepts=link(concepts), layers=layers,
                start_percent=0.0, end_percent=1.0, space="output", softmax=True,
                concept_self_attention=True, concept_cross_attention=True)


def to_mask_node(saliency="saliency", concepts: str = "dog", method: str = "relative_mean", grow: int = 0,
                 image: str | None = None) -> dict:
    inputs = dict(saliency=link(saliency), concepts=concepts, method=method, threshold=0.5, grow=grow,
                  feather=0.0, invert=False)
    if image is not None:
        inputs["image"] = link(image)
    return node("ConceptAttentionSaliencyToMask", **inputs)


def ksampler_node(model="unet", positive="positive", negative="negative", latent="latent", seed: int = 0,
                  steps: int = 3, cfg: float = 2.0) -> dict:
    return node("KSampler", model=link(model), seed=seed, steps=steps, cfg=cfg, sampler_name="euler",
                scheduler="simple", positive=link(positive), negative=link(negative),
                latent_image=link(latent), denoise=1.0)


def patched_and_plain_samplers(prefix: str, seed: int, steps: int = 3, cfg: float = 2.0) -> dict:
    """The patch node, a KSampler on the patched model and one on the plain model with the same seed, each
    saving its latent (save_latent, save_plain_latent): check_patched_is_plain compares them."""
    return {
        "patch": patch_node(layers="all"),
        "sampler": ksampler_node(model="patch", seed=seed, steps=steps, cfg=cfg),
        "plain_sampler": ksampler_node(model="unet", seed=seed, steps=steps, cfg=cfg),
        "save_latent": node("SaveLatent", samples=link("sampler"), filename_prefix=prefix + "_patched"),
        "save_plain_latent": node("SaveLatent", samples=link("plain_sampler"), filename_prefix=prefix + "_plain"),
    }


def check_patched_is_plain(server: ComfyServer, result: PromptResult, latent_shape=None) -> torch.Tensor:
    """The patched model's latent (patched_and_plain_samplers) is the plain model's, bit for bit. Returns it."""
    patched = read_latent(output_files(server, result, "save_latent", "latents")[0])
    plain = read_latent(output_files(server, result, "save_plain_latent", "latents")[0])
    if latent_shape is not None:
        assert tuple(patched.shape) == latent_shape
    assert torch.equal(patched, plain), "the patched model must generate exactly what the plain model does"
    return patched


def prompt_nodes(clip="clip", text: str = "a dog on the grass under the sky") -> dict:
    """positive (CLIPTextEncode) and negative (its zeroed copy: no second text encode)."""
    return {
        "positive": node("CLIPTextEncode", clip=link(clip), text=text),
        "negative": node("ConditioningZeroOut", conditioning=link("positive")),
    }


def unique_prefix(name: str) -> str:
    """An output filename prefix no other test uses (files are looked up through the history)."""
    return f"{name}_{uuid.uuid4().hex[:8]}/out"


# ---------------------------------------------------------------------------------------------
# reading results
# ---------------------------------------------------------------------------------------------


def require_ok(result: PromptResult, server: ComfyServer) -> PromptResult:
    assert result.ok, result.describe() + "\n--- server log tail ---\n" + server.log_tail(40)
    return result


def output_files(server: ComfyServer, result: PromptResult, node_id: str, key: str = "images") -> list[Path]:
    """Files an output node reported in the history (ComfyUI's {"filename", "subfolder", "type"})."""
    entries = result.outputs.get(node_id, {}).get(key)
    assert entries, f"node {node_id!r} reported no {key!r}; outputs: {json.dumps(result.outputs)[:2000]}"
    paths = []
    for entry in entries:
        assert entry["type"] == "output", entry
        path = server.output_dir / entry["subfolder"] / entry["filename"]
        assert path.is_file(), f"{path} reported by node {node_id!r} does not exist"
        paths.append(path)
    return paths


def saliency_file(server: ComfyServer, result: PromptResult, node_id: str) -> Path:
    """The .safetensors file a Save Saliency node wrote."""
    files = result.outputs.get(node_id, {}).get("saliency_files")
    assert files and len(files) == 1, f"Save Saliency node {node_id!r} reported {files!r}"
    path = server.output_dir / files[0]
    assert path.is_file(), f"{path} reported by Save Saliency does not exist"
    return path


def read_mask_png(path: Path) -> np.ndarray:
    """A saved MaskToImage PNG as uint8 [H, W]; its three channels must be equal (a gray mask)."""
    from PIL import Image

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all(), \
        f"{path}: a mask picture must be gray"
    return pixels[..., 0]


def read_latent(path: Path) -> torch.Tensor:
    """The tensor a stock SaveLatent node wrote."""
    from safetensors.torch import load_file

    return load_file(str(path))["latent_tensor"]


def mask_as_png_values(mask: torch.Tensor) -> np.ndarray:
    """What MaskToImage + SaveImage make of a MASK [1, H, W]: uint8 [H, W]."""
    return np.clip(255.0 * mask[0].numpy(), 0, 255).astype(np.uint8)


def nodes_executed(result: PromptResult) -> set[str]:
    return {m["data"]["node"] for m in result.messages
            if m.get("type") == "executing" and m["data"].get("node") is not None}


def nodes_cached(result: PromptResult) -> set[str]:
    return {n for m in result.messages if m.get("type") == "execution_cached" for n in m["data"].get("nodes", [])}


def error_text(result: PromptResult) -> str:
    """The user-facing message of a failed prompt (execution error or validation rejection)."""
    if result.status == "error":
        return str(result.error.get("exception_message", ""))
    return json.dumps(result.error)


# ---------------------------------------------------------------------------------------------
# interrupting a running prompt
# ---------------------------------------------------------------------------------------------


def run_and_interrupt(server: ComfyServer, prompt: dict, node_id: str, after_steps: int = 2,
                      timeout: float = 120.0) -> tuple[PromptResult, dict]:
    """Queues `prompt`, waits until node `node_id` reported `after_steps` progress steps, then
    POSTs /interrupt. Returns (the PromptResult, the progress message that triggered it)."""
    triggers = []

    def interrupt_on_progress(msg):
        data = msg.get("data") or {}
        if (not triggers and msg.get("type") == "progress" and data.get("node") == node_id
                and data.get("value", 0) >= after_steps):
            triggers.append(msg)
            server.interrupt()

    result = server.run_prompt(prompt, timeout=timeout, on_message=interrupt_on_progress)
    assert result.status != "rejected", f"prompt rejected: {result.error}"
    return result, (triggers[0] if triggers else None)
