"""Models ComfyUI keeps partly off the compute device: the concept stream moves no weight a second time.

A partially loaded model (ComfyUI's lowvram path: ModelPatcher.load with a memory budget smaller than the model)
casts the weights of its offloaded modules from their stored copy on every call (comfy.ops.cast_bias_weight). The
concept stream calls the blocks' modules again; it must reuse the block's casts (stream/shared_casts.py), so each
stored weight is cast no more often per step than in plain sampling, the picture stays bit-identical and the maps
are those of the fully loaded model.
"""

from __future__ import annotations

import collections
import functools

import pytest
import torch

from concept_attention.concept_patch.generation import install_concept_attention
from concept_attention.concept_patch.stream import shared_casts
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention_tests.comfy.module_caches import cached_clip_and_concepts, cleared_after_module
from concept_attention_tests.comfy.partial_loads import check_shared_casts
from concept_attention_tests.comfy.sampling import sample
from concept_attention_tests.comfy.tiny import tiny_cogvideox, tiny_models, tiny_single_stream, tiny_text_encoders

CONCEPTS = ["dog", "green grass", "sky"]

# family (test id): (model builder, text encoder, latent shape, sampling arguments)
CASES = {
    "flux": (tiny_models.flux_model, tiny_models.flux_clip, (1, 16, 6, 8), {"cfg": 1.0}),
    "z_image": (tiny_single_stream.z_image_model, tiny_text_encoders.z_image_clip, (2, 16, 6, 8), {"cfg": 3.0}),
    "hidream": (tiny_models.hidream_model, tiny_models.hidream_clip, (1, 16, 6, 8), {"cfg": 1.0}),
    "cogvideox": (lambda dtype: tiny_cogvideox.cogvideox_model("5b", dtype=dtype), tiny_cogvideox.cogvideox_clip,
                  (1, 16, 3, 6, 8), {"cfg": 1.0}),
}
# Lumina 2 / Z-Image cast their q/k RMS-norm scales by calling comfy.ops.cast_bias_weight themselves, outside the
# module's forward where a shared cast sits; the concept stream, which uses the model's fused norm+RoPE the same way,
# casts those scales (head_dim values each) once more a block.
DIRECT_CASTS = {"z_image": ("attention.q_norm", "attention.k_norm")}
ENCODERS = {name: cached_clip_and_concepts(case[1], CONCEPTS) for name, case in CASES.items()}


@functools.cache
def _model(name, dtype):
    return CASES[name][0](dtype=dtype)


_module_scope = cleared_after_module(_model, *(cache for pair in ENCODERS.values() for cache in pair))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_concepts_cast_no_stored_weight_twice(name, dtype, partial_loads):
    model = _model(name, dtype)
    _, shape, kwargs = CASES[name][1:]
    clip, concepts = ENCODERS[name]
    patched, session = install_concept_attention(model, concepts(), SaliencyOptions(layers=(0, 1, 2)))
    check_shared_casts(partial_loads, model, patched, session,
                       lambda m: sample(m, clip(), latent_shape=shape, steps=2, **kwargs), DIRECT_CASTS.get(name, ()))


def test_without_shared_casts_the_concept_stream_casts_again(partial_loads, monkeypatch):
    """The count above sees a second cast: with sharing switched off, the text modules are cast twice a block."""
    model = _model("flux", torch.float32)
    clip, concepts = ENCODERS["flux"]
    patched, _ = install_concept_attention(model, concepts(), SaliencyOptions(layers=(0, 1, 2)))
    partial_loads.start(0.5)

    def run(m):
        return sample(m, clip(), latent_shape=(1, 16, 6, 8), cfg=1.0, steps=2)

    _, plain_casts = partial_loads.count(model, lambda: run(model))
    monkeypatch.setattr(shared_casts, "shares_casts", lambda module: False)
    _, concept_casts = partial_loads.count(model, lambda: run(patched))
    twice = [n for n, count in concept_casts.items() if count == 2 * plain_casts.get(n, 0)]
    assert any(".txt_" in n for n in twice), concept_casts


def test_a_resident_model_never_enters_the_shared_cast(monkeypatch):
    """Fully loaded: no module casts, so the object patches are never called and nothing is kept."""
    model = _model("flux", torch.float32)
    clip, concepts = ENCODERS["flux"]
    patched, session = install_concept_attention(model, concepts(), SaliencyOptions(layers=(0, 1, 2)))
    assert any(isinstance(p, shared_casts.SharedCast) for p in patched.object_patches.values())
    calls = collections.Counter()
    call = shared_casts.SharedCast.__call__
    monkeypatch.setattr(shared_casts.SharedCast, "__call__", lambda self, *a, **k: calls.update([1]) or call(self, *a, **k))
    sample(patched, clip(), latent_shape=(1, 16, 6, 8), cfg=1.0, steps=2)
    assert not calls and session.records
