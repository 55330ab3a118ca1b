"""The concept stream reads Linear weights only through the modules' own forward, never as raw tensors.

Quantized loaders give the model weights that are no plain tensors: ComfyUI-GGUF's GGMLTensor holds the packed
GGUF blocks (its `dtype` is the storage's, uint8 for Q8_0 or Q4_K) and its Linear dequantizes them inside its
forward; ComfyUI's QuantizedTensor dequantizes inside its ops. A pack that reads `module.weight` itself (its dtype,
its values) computes with the packed bytes, or fails. Here every Linear of a tiny model gets an OpaqueWeight: the
same values (so pictures and maps can be compared exactly), but any read of it by the pack's code, an attribute
(`dtype`, `shape`) or an operation, raises. ComfyUI's code (the modules' forward and casts, the model's own code,
model management) reads it as usual: the rule under test is the pack's.
"""

from __future__ import annotations

import functools
import os
import sys

import pytest
import torch

from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.requery import cache as image_stream_cache
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import (
    tiny_cogvideox,
    tiny_hunyuan_video,
    tiny_models,
    tiny_single_stream,
    tiny_text_encoders,
    tiny_wan,
)


def _package_dir() -> str:
    import concept_attention.concept_patch

    return os.path.dirname(os.path.abspath(concept_attention.concept_patch.__file__)) + os.sep


_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


class RawWeightRead(AssertionError):
    pass


class OpaqueWeight(torch.Tensor):
    """A Linear weight the pack may not read (module docstring). The first caller outside torch's own Python code
    decides: the pack's code raises RawWeightRead naming the line."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith(_TORCH_DIR):
            frame = frame.f_back
        if frame is not None and frame.f_code.co_filename.startswith(_package_dir()):
            where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
            raise RawWeightRead(f"the pack read a Linear weight outside the module's forward ({func}) at {where}")
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **(kwargs or {}))
        # What keeps a weight a weight (a Parameter's detach, a move, ComfyUI's casts) keeps it opaque.
        if getattr(func, "__name__", "") in ("detach", "to", "clone", "requires_grad_") and torch.is_tensor(out) \
                and type(out) is torch.Tensor:
            out = out.as_subclass(cls)
        return out


def opaque_linears(model) -> int:
    """Every Linear weight of the diffusion model made an OpaqueWeight, in place (values unchanged)."""
    count = 0
    for module in model.model.diffusion_model.modules():
        if isinstance(module, torch.nn.Linear):
            weight = module._parameters["weight"]
            module._parameters["weight"] = torch.nn.Parameter(weight.detach().as_subclass(OpaqueWeight),
                                                              requires_grad=False)
            count += 1
    return count


CONCEPTS = ["dog", "green grass", "sky"]

# family: (model builder, text encoder, latent shape, layers, sampling arguments)
FAMILIES = {
    "Flux.1": (tiny_models.flux_model, tiny_models.flux_clip, (1, 16, 6, 8), (0, 1, 2), {"cfg": 1.0}),
    "SD3": (tiny_models.sd3_model, tiny_models.sd3_clip, (1, 16, 6, 8), (0, 1, 2), {"cfg": 3.0}),
    "Qwen-Image": (tiny_models.qwen_image_model, tiny_text_encoders.qwen_image_clip, (1, 16, 1, 6, 8), (0, 1, 2),
                   {"cfg": 3.0}),
    "HiDream": (tiny_models.hidream_model, tiny_models.hidream_clip, (1, 16, 6, 8), (0, 1, 2), {"cfg": 1.0}),
    "CogVideoX": (tiny_cogvideox.cogvideox_model, tiny_cogvideox.cogvideox_clip, (1, 16, 3, 4, 6), (0, 1, 2),
                  {"cfg": 1.0}),
    "HunyuanVideo": (tiny_hunyuan_video.hunyuan_video_model, tiny_text_encoders.hunyuan_video_clip, (1, 16, 3, 4, 6),
                     (0, 1, 2), {"cfg": 1.0}),
    "Wan": (tiny_wan.wan_model, tiny_wan.wan_clip, (1, 16, 3, 4, 6), (0, 1, 2), {"cfg": 3.0}),
    "Z-Image": (tiny_single_stream.z_image_model, tiny_text_encoders.z_image_clip, (1, 16, 6, 8), (0, 1, 2),
                {"cfg": 3.0}),
    "Lumina 2": (tiny_single_stream.lumina2_model, tiny_text_encoders.lumina2_clip, (1, 16, 6, 8), (0, 1, 2),
                 {"cfg": 3.0}),
    "Chroma": (tiny_models.chroma_model, tiny_models.flux_clip, (1, 16, 6, 8), (0, 1, 2), {"cfg": 1.0}),
    "Flux.2 Klein": (lambda: tiny_models.flux2_model("klein4b"), lambda: tiny_text_encoders.klein_clip("4b"),
                     (1, 128, 3, 4), (0, 1, 2), {"cfg": 1.0}),
    "LongCat-Image": (tiny_models.longcat_model, tiny_text_encoders.longcat_clip, (1, 16, 6, 8), (0, 1, 2),
                      {"cfg": 1.0}),
    "Ovis-Image": (tiny_models.ovis_model, tiny_text_encoders.ovis_clip, (1, 16, 6, 8), (0, 1, 2), {"cfg": 1.0}),
    "CogVideoX 1.5": (lambda: tiny_cogvideox.cogvideox_model("1.5"), tiny_cogvideox.cogvideox_clip, (1, 16, 3, 4, 6),
                      (0, 1, 2), {"cfg": 1.0}),
    "HunyuanVideo 1.5": (tiny_hunyuan_video.hunyuan_video15_model, tiny_text_encoders.hunyuan_video15_clip,
                         (1, 32, 3, 4, 6), (0, 1, 2), {"cfg": 1.0}),
    "Krea 2": (tiny_single_stream.krea2_model, tiny_text_encoders.krea2_clip, (1, 16, 1, 6, 8), (0, 1, 2),
               {"cfg": 1.0}),
}


@functools.cache
def _clip(family):
    return FAMILIES[family][1]()


@functools.cache
def _concepts(family, names=tuple(CONCEPTS)):
    return encode_concepts(_clip(family), list(names))


_module_scope = cleared_after_module(_clip, _concepts, one_thread=True)


@pytest.fixture(autouse=True)
def _empty_cache(comfyui_path):
    image_stream_cache.CACHE.clear()
    yield
    image_stream_cache.CACHE.clear()


def _run(model, family):
    """(the sampled latent with the concept stream on, its maps, an encode's maps, a re-query's maps)."""
    _, _, shape, layers, kwargs = FAMILIES[family]
    options = SaliencyOptions(layers=layers)
    patched, session = install_concept_attention(model, _concepts(family), options)
    out = sample(patched, _clip(family), latent_shape=shape, steps=2, **kwargs)
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    cond = _clip(family).encode_from_tokens_scheduled(_clip(family).tokenize("a dog on the grass"))
    encoded = encode_saliency(model, _concepts(family), latent, options, conditioning=cond, cache_budget=1 << 30)
    other = _concepts(family, ("dog", "collar", "leash"))
    requeried = encode_saliency(model, other, latent, options, conditioning=cond, cache_budget=1 << 30)
    return out, session.records[-1].saliency.maps, encoded.maps, requeried.maps


@pytest.mark.parametrize("family", list(FAMILIES))
def test_concept_stream_through_opaque_linear_weights(family):
    build = FAMILIES[family][0]
    plain_out, *plain_maps = _run(build(), family)
    model = build()
    count = opaque_linears(model)
    out, *maps = _run(model, family)
    linears = [m for m in model.model.diffusion_model.modules() if isinstance(m, torch.nn.Linear)]
    assert count > 0 and all(type(m.weight) is OpaqueWeight for m in linears)  # still opaque after the runs
    assert torch.equal(out, plain_out)
    for got, expected in zip(maps, plain_maps):
        assert torch.isfinite(got).all()
        assert torch.equal(got, expected)


def test_a_raw_read_by_the_pack_fails():
    """The guard itself: code of the pack's files that reads a weight raises; the same read elsewhere does not."""
    weight = torch.nn.Parameter(torch.ones(2, 2).as_subclass(OpaqueWeight), requires_grad=False)
    assert weight.dtype == torch.float32  # here (a test file) it reads as usual
    pack_file = os.path.join(_package_dir(), "families", "any_family.py")
    for source in ("weight.dtype", "weight * 2", "weight.to(torch.float16)", "torch.nn.functional.linear(x, weight)"):
        code = compile(source, pack_file, "eval")
        with pytest.raises(RawWeightRead):
            eval(code, {"weight": weight, "torch": torch, "x": torch.ones(1, 2)})
