"""Re-query: new concepts on a picture already analysed run the concept stream only, and give exactly the maps a
full run gives; anything that changes the image stream runs the model again; the cache keeps to its budget."""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention.concept_patch.encode import encode_saliency
from concept_attention.concept_patch.requery import cache as image_stream_cache
from concept_attention.concept_patch.stream.options import SaliencyOptions
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.tiny import (
    tiny_cogvideox,
    tiny_hunyuan_video,
    tiny_models,
    tiny_single_stream,
    tiny_text_encoders,
)

BUDGET = 1 << 30
FIRST = ["dog", "grass", "sky"]
SECOND = ["dog", "collar", "leash", "green grass"]

# family: (model builder, text encoder builder, latent shape)
FAMILIES = {
    "Flux.1": (tiny_models.flux_model, tiny_models.flux_clip, (1, 16, 6, 8)),
    "Chroma": (tiny_models.chroma_model, tiny_models.flux_clip, (1, 16, 6, 8)),
    "SD3": (tiny_models.sd3_model, tiny_models.sd3_clip, (1, 16, 6, 8)),
    "SD3.5 (MMDiT-X)": (lambda: tiny_models.sd3_model(mmdit_x_layers=[0, 1]), tiny_models.sd3_clip, (1, 16, 6, 8)),
    "Flux.2 dev": (lambda: tiny_models.flux2_model("dev"), tiny_text_encoders.flux2_dev_clip, (1, 128, 3, 4)),
    "Flux.2 Klein": (lambda: tiny_models.flux2_model("klein4b"), lambda: tiny_text_encoders.klein_clip("4b"), (1, 128, 3, 4)),
    "LongCat-Image": (tiny_models.longcat_model, tiny_text_encoders.longcat_clip, (1, 16, 6, 8)),
    "Ovis-Image": (tiny_models.ovis_model, tiny_text_encoders.ovis_clip, (1, 16, 6, 8)),
    "Chroma Radiance": (lambda: tiny_models.chroma_radiance_model(sequential_txt_ids=True), tiny_models.flux_clip,
                        (1, 3, 36, 40)),
    "Qwen-Image": (tiny_models.qwen_image_model, tiny_text_encoders.qwen_image_clip, (1, 16, 1, 6, 8)),
    "HiDream": (tiny_models.hidream_model, tiny_models.hidream_clip, (1, 16, 6, 8)),
    "CogVideoX 5B (video)": (tiny_cogvideox.cogvideox_model, tiny_cogvideox.cogvideox_clip, (1, 16, 3, 4, 6)),
    "CogVideoX 1.5 (video)": (lambda: tiny_cogvideox.cogvideox_model("1.5"), tiny_cogvideox.cogvideox_clip,
                              (1, 16, 3, 4, 6)),
    "HunyuanVideo (video)": (tiny_hunyuan_video.hunyuan_video_model, tiny_text_encoders.hunyuan_video_clip,
                             (1, 16, 3, 4, 6)),
    "HunyuanVideo 1.5 (video)": (tiny_hunyuan_video.hunyuan_video15_model, tiny_text_encoders.hunyuan_video15_clip,
                                 (1, 32, 3, 4, 6)),
    "Z-Image": (tiny_single_stream.z_image_model, tiny_text_encoders.z_image_clip, (1, 16, 6, 8)),
    "Lumina 2": (tiny_single_stream.lumina2_model, tiny_text_encoders.lumina2_clip, (1, 16, 6, 8)),
    "Krea 2": (tiny_single_stream.krea2_model, tiny_text_encoders.krea2_clip, (1, 16, 1, 6, 8)),
}
# The concepts' own text preprocessing (single-stream models' caption refiners, HunyuanVideo's token refiner) runs
# in a re-query too.
TEXT_PREPROCESSING = ("context_refiner.", "txtfusion.", "txt_in.")


@functools.cache
def _setup(family):
    build, clip_builder, shape = FAMILIES[family]
    clip = clip_builder()
    model = build()
    concepts = (encode_concepts(clip, FIRST), encode_concepts(clip, SECOND, pooling="first"))
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass"))
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    return model, clip, concepts, cond, latent


_module_scope = cleared_after_module(_setup)


@pytest.fixture(autouse=True)
def _empty_cache(comfyui_path):
    image_stream_cache.CACHE.clear()
    yield
    image_stream_cache.CACHE.clear()


class ModelCalls:
    """Counts calls of the diffusion model and of its blocks (any nn.Module list under it)."""

    def __init__(self, model):
        self.dm = model.model.diffusion_model
        self.count = 0

    def __enter__(self):
        self.handles = [m.register_forward_pre_hook(self._seen) for name, m in self.dm.named_modules()
                        if m is self.dm or (type(m).__name__.endswith(("Block", "BlockX"))
                                            and not name.startswith(TEXT_PREPROCESSING))]
        return self

    def _seen(self, *_):
        self.count += 1

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def _encode(model, concepts, latent, cond, budget=BUDGET, **kw):
    options = {k: kw.pop(k) for k in list(kw) if k in ("layers", "space", "softmax", "concept_self_attention",
                                                        "concept_cross_attention")}
    options.setdefault("layers", (0, 2))
    return encode_saliency(model, concepts, latent, SaliencyOptions(**options), conditioning=cond, cache_budget=budget,
                           **kw)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_requery_equals_a_full_run_and_runs_no_image_stream(family):
    model, _, (first, second), cond, latent = _setup(family)
    full_first = _encode(model, first, latent, cond)
    assert full_first.metadata["requery"] is False
    assert image_stream_cache.CACHE.nbytes > 0
    # other concepts, pooling, space, softmax, switches and a layer choice inside the recorded blocks
    changes = dict(layers=(1,), space="value", softmax=False, concept_self_attention=False)
    with ModelCalls(model) as calls:
        requery = _encode(model, second, latent, cond, **changes)
    assert requery.metadata["requery"] is True
    assert calls.count == 0, "a re-query called the diffusion model or one of its blocks"
    fresh = _encode(model, second, latent, cond, budget=0, **changes)  # no cache: a full run
    assert fresh.metadata["requery"] is False
    assert torch.equal(requery.maps, fresh.maps)
    # the first concepts again: the first run's maps, exactly
    assert torch.equal(_encode(model, first, latent, cond).maps, full_first.maps)


def test_each_keyed_input_forces_a_full_run():
    model, clip, (first, second), cond, latent = _setup("Flux.1")
    base = dict(samples=2, seed=3, noise_level=0.5, layers=(0, 1))
    _encode(model, first, latent, cond, **base)
    other_prompt = clip.encode_from_tokens_scheduled(clip.tokenize("a cat"))
    lora = model.clone()
    key = "diffusion_model.double_blocks.0.img_attn.qkv.weight"
    lora.add_patches({key: (torch.randn(lora.get_model_object(key).shape) * 0.01,)}, 1.0)
    cases = {
        "latent": (model, latent + 0.1, cond, base),
        "seed": (model, latent, cond, {**base, "seed": 4}),
        "samples": (model, latent, cond, {**base, "samples": 1}),
        "noise level": (model, latent, cond, {**base, "noise_level": 0.6}),
        "prompt": (model, latent, other_prompt, base),
        "model patches (LoRA)": (lora, latent, cond, base),
        "dtype": (tiny_models.flux_model(dtype=torch.bfloat16), latent, cond, base),
        "a block beyond the recorded ones": (model, latent, cond, {**base, "layers": (0, 2)}),
    }
    for what, (m, lat, c, kw) in cases.items():
        with ModelCalls(m) as calls:
            sal = _encode(m, second, lat, c, **kw)
        assert sal.metadata["requery"] is False and calls.count > 0, f"changing the {what} did not run the model"
    with ModelCalls(model) as calls:
        assert _encode(model, second, latent, cond, **base).metadata["requery"] is True
    assert calls.count == 0


def test_the_cache_keeps_to_its_budget_and_evicts_the_least_recently_used():
    model, _, (first, second), cond, latent = _setup("Flux.1")
    cache = image_stream_cache.CACHE
    _encode(model, first, latent, cond)
    one = cache.nbytes
    assert one > 0
    budget = int(one * 1.5)  # room for one picture, not two
    pictures = [latent + i for i in range(3)]
    for picture in pictures:
        _encode(model, first, picture, cond, budget=budget)
        assert 0 < cache.nbytes <= budget
    assert len(cache.entries) == 1
    # the last picture is kept, the earlier ones were evicted
    assert _encode(model, second, pictures[2], cond, budget=budget).metadata["requery"] is True
    assert _encode(model, second, pictures[0], cond, budget=budget).metadata["requery"] is False
    # an entry larger than the whole budget is not kept; a smaller budget evicts at once
    _encode(model, first, latent + 9, cond, budget=one // 2)
    assert cache.nbytes == 0
    # a budget of 0 keeps nothing
    _encode(model, first, latent, cond, budget=0)
    assert cache.nbytes == 0


def test_entries_of_a_model_comfyui_unloaded_are_dropped():
    import comfy.model_management

    model, _, (first, second), cond, latent = _setup("Flux.1")
    _encode(model, first, latent, cond)
    assert image_stream_cache.CACHE.entries
    comfy.model_management.unload_all_models()
    assert not image_stream_cache.CACHE.entries  # freed as ComfyUI unloaded the model, not at the next use
    assert _encode(model, second, latent, cond).metadata["requery"] is False


def test_interrupting_a_requery_leaves_cache_and_model_usable():
    import comfy.model_management

    model, _, (first, second), cond, latent = _setup("Flux.1")
    _encode(model, first, latent, cond)
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            _encode(model, second, latent, cond)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    again = _encode(model, second, latent, cond)
    assert again.metadata["requery"] is True
    assert torch.equal(again.maps, _encode(model, second, latent, cond, budget=0).maps)


def test_a_tensor_is_hashed_once_until_it_changes(monkeypatch):
    """The key's digests are remembered per tensor object (a prompt's states are megabytes), yet an in-place
    change of that tensor, or another tensor, is hashed anew."""
    import hashlib

    calls = []
    real_sha1 = hashlib.sha1
    monkeypatch.setattr(image_stream_cache.hashlib, "sha1", lambda data: calls.append(1) or real_sha1(data))
    states = torch.randn(2, 7, 16)
    first = image_stream_cache.tensor_digest(states)
    assert image_stream_cache.tensor_digest(states) == first and len(calls) == 1
    states[0, 0, 0] += 1.0
    changed = image_stream_cache.tensor_digest(states)
    assert changed != first and len(calls) == 2
    copy = states.clone()
    assert image_stream_cache.tensor_digest(copy) == changed and len(calls) == 3
    with torch.inference_mode():
        frozen = torch.randn(3, 4)  # inference tensors have no version counter
    assert image_stream_cache.tensor_digest(frozen) == image_stream_cache.tensor_digest(frozen.clone())


def test_a_latent_changed_in_place_is_not_taken_for_the_analysed_one():
    model, _, (first, second), cond, latent = _setup("Flux.1")
    latent = latent.clone()
    _encode(model, first, latent, cond, layers=(0, 1))
    latent.mul_(0.5)
    with ModelCalls(model) as calls:
        assert _encode(model, second, latent, cond, layers=(0, 1)).metadata["requery"] is False
    assert calls.count > 0
