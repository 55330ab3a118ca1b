"""ComfyUI's own quantized checkpoints (per-layer `comfy_quant` formats) on a dual-stream, a single-stream and a
video family: the picture is bit-identical with the concept stream on and off, and the maps are finite and close to
the full-precision model's maps.

The files are written and read by ComfyUI's code (quantized_files.py): SD3 through the stock loader from a file,
Lumina 2 and CogVideoX (whose detection hard-codes full sizes) through the loader's own steps. On this CPU
ComfyUI runs every format: int8 weight-only, the others emulated (pick_operations disables the fp8, mxfp8 and nvfp4
kernels without a GPU that has them, and the layers dequantize their weights in their forward). The concept stream
runs the same modules, so nothing here depends on the kernel.
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention_tests.comfy import quantized_files
from concept_attention_tests.comfy.module_caches import cached_clip_and_concepts, cleared_after_module
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_cogvideox, tiny_models, tiny_single_stream, tiny_text_encoders

CONCEPTS = ["dog", "green grass", "sky"]

# family: (full-precision model, text encoder, block lists quantized, latent shape, layers, sampling arguments,
#          read from a file by the stock loader)
FAMILIES = {
    "SD3": (lambda: tiny_models.sd3_model(depth=2), tiny_models.sd3_clip, ("joint_blocks.",), (1, 16, 6, 8),
            (0, 1), {"cfg": 3.0}, True),
    "Lumina 2": (tiny_single_stream.lumina2_model, tiny_text_encoders.lumina2_clip, ("layers.", "context_refiner."),
                 (1, 16, 6, 8), (0, 1, 2), {"cfg": 3.0}, False),
    "CogVideoX": (lambda: tiny_cogvideox.cogvideox_model("5b", heads=2), tiny_cogvideox.cogvideox_clip, ("blocks.",),
                  (1, 16, 3, 4, 6), (0, 1, 2), {"cfg": 1.0}, False),
}
ENCODERS = {name: cached_clip_and_concepts(case[1], CONCEPTS) for name, case in FAMILIES.items()}

# The relative error of the raw maps (softmax off), ||maps - full model's|| / ||full model's||, allowed per format:
# 1.5 to 2.5 times the largest measured over the three families (in the comment; SD3 / Lumina 2 / CogVideoX), so a
# change of seed or torch version does not trip it. The weights' own rounding sets the scale: a relative step of
# 2^-4 for e4m3 (3 mantissa bits), 2^-3 for e5m2, 1/127 of the largest weight for int8, a few tenths for the 4-bit
# formats; it passes through 2-3 blocks, so the maps move by about as much. A concept stream that read a quantized
# weight wrongly (the raw qdata, a missing scale) or skipped the model's modules gives maps unrelated to the full
# model's: an error of order 1, as two models of different seeds give (0.61 / 0.94 / 3.0:
# test_the_error_measure_tells_models_apart).
MAP_BOUNDS = {
    "fp8_e4m3fn_scaled": 0.1,  # measured 0.019 / 0.004 / 0.046
    "fp8_e5m2_scaled": 0.25,  # measured 0.022 / 0.023 / 0.127
    "int8_tensorwise": 0.07,  # measured 0.011 / 0.004 / 0.031
    "int8_convrot": 0.06,  # measured 0.006 / 0.003 / 0.027
    "mxfp8": 0.12,  # measured 0.014 / 0.009 / 0.056
    "nvfp4": 0.35,  # measured 0.112 / 0.026 / 0.226
    "convrot_w4a4": 0.4,  # measured 0.041 / 0.051 / 0.257
    "asym_w4a8_int8": 0.2,  # measured 0.039 / 0.016 / 0.084
}


@functools.cache
def _full(family):
    return FAMILIES[family][0]()


@functools.cache
def _quantized(family, fmt, tmp_root):
    build, _, blocks, *_, from_file = FAMILIES[family]
    full = _full(family)
    sd, count = quantized_files.quantized_state_dict(full.model.diffusion_model, fmt, blocks)
    assert count >= 6, count
    if from_file:
        path = tmp_root / f"{family}-{fmt}.safetensors"
        quantized_files.save(sd, path)
        model = quantized_files.load_file(path)
    else:
        config = full.model.model_config
        unet_config = {k: v for k, v in config.unet_config.items() if k not in ("dtype", "device")}
        model = quantized_files.load_state_dict(type(config), unet_config, sd)
    assert len(quantized_files.quantized_layers(model)) == count
    return model


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("quantized")


_module_scope = cleared_after_module(_full, _quantized, *(c for pair in ENCODERS.values() for c in pair), one_thread=True)


def _relative_error(maps, reference):
    return float((maps - reference).norm() / reference.norm())


def _encode(model, family, latent):
    clip = ENCODERS[family][0]()
    layers = FAMILIES[family][4]
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass"))
    # Raw maps (softmax off): on random weights the softmax maps sit near 1 / concepts, which would hide errors.
    return encode_saliency(model, ENCODERS[family][1](), latent, SaliencyOptions(layers=layers, softmax=False),
                           conditioning=cond, noise_level=0.5, seed=3).maps


@pytest.mark.parametrize("fmt", list(quantized_files.FORMATS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_quantized_checkpoint(family, fmt, tmp_root):
    model = _quantized(family, fmt, tmp_root)
    clip, concepts = ENCODERS[family]
    _, _, _, shape, layers, kwargs, _ = FAMILIES[family]
    plain = sample(model, clip(), latent_shape=shape, steps=2, **kwargs)
    patched, session = install_concept_attention(model, concepts(), SaliencyOptions(layers=layers))
    out = sample(patched, clip(), latent_shape=shape, steps=2, **kwargs)
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, out)
    assert torch.isfinite(session.records[-1].saliency.maps).all()

    latent = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    maps = _encode(model, family, latent)
    reference = _encode(_full(family), family, latent)
    assert torch.isfinite(maps).all() and maps.shape == reference.shape
    error = _relative_error(maps, reference)
    print(f"{family} {fmt}: relative map error {error:.4f}")
    assert 0 < error <= MAP_BOUNDS[fmt], (family, fmt, error)  # > 0: the maps come from the quantized weights


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_error_measure_tells_models_apart(family):
    """The bounds above mean something: the same measure between two full-precision models of different random
    weights is of order 1 (0.6 to 3), above every bound."""
    latent = torch.randn(FAMILIES[family][3], generator=torch.Generator().manual_seed(5))
    other = {"SD3": lambda: tiny_models.sd3_model(depth=2, seed=1), "Lumina 2": lambda: tiny_single_stream.lumina2_model(seed=1),
             "CogVideoX": lambda: tiny_cogvideox.cogvideox_model("5b", heads=2, seed=1)}[family]()
    error = _relative_error(_encode(other, family, latent), _encode(_full(family), family, latent))
    print(f"{family}: relative error between seeds {error:.3f}")
    assert error > max(MAP_BOUNDS.values()), error
