"""Each tiny model of ComfyUI's own classes is claimed by exactly one family of the registry (its is_variant
predicates exclude each other, whatever the list order), and a model of a known class that no variant matches is
refused naming its class and the supported families."""

from __future__ import annotations

import pytest

from concept_attention.concept_patch.checks.errors import UnsupportedModelError
from concept_attention.concept_patch.families import registry
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.tiny import (
    tiny_cogvideox,
    tiny_hunyuan_video,
    tiny_joyimage,
    tiny_ltx2,
    tiny_minimax,
    tiny_models,
    tiny_single_stream,
    tiny_wan,
)

TINY = {
    "Flux.1": lambda: tiny_models.flux_model(depth=1),
    "Flux.2": lambda: tiny_models.flux2_model("klein4b", depth=1),
    "SD3/SD3.5": lambda: tiny_models.sd3_model(depth=2),
    "Chroma": lambda: tiny_models.chroma_model(depth=1),
    "Chroma Radiance": lambda: tiny_models.chroma_radiance_model(depth=1),
    "LongCat-Image": lambda: tiny_models.longcat_model(depth=1),
    "Ovis-Image": lambda: tiny_models.ovis_model(depth=1),
    "Qwen-Image": lambda: tiny_models.qwen_image_model(depth=1),
    "Mage-Flow": lambda: tiny_models.mage_flow_model(depth=1),
    "JoyImage": lambda: tiny_joyimage.joyimage_model(depth=1),
    "HiDream-I1/E1": lambda: tiny_models.hidream_model(depth=1),
    "CogVideoX": lambda: tiny_cogvideox.cogvideox_model(depth=1),
    "HunyuanVideo": lambda: tiny_hunyuan_video.hunyuan_video_model(depth=1),
    "HunyuanVideo 1.5": lambda: tiny_hunyuan_video.hunyuan_video15_model(depth=1),
    "HunyuanImage 2.1": lambda: tiny_hunyuan_video.hunyuan_image21_model(depth=1),
    "MiniMax H3": lambda: tiny_minimax.minimax_model(depth=1),
    "Z-Image": lambda: tiny_single_stream.z_image_model(depth=1),
    "Lumina 2": lambda: tiny_single_stream.lumina2_model(depth=1),
    "Krea 2": lambda: tiny_single_stream.krea2_model(depth=1),
    "Wan 2.1/2.2": lambda: tiny_wan.wan_model("i2v", depth=1),
    "Wan VACE": lambda: tiny_wan.vace_model(depth=1),
    "LTX-2": lambda: tiny_ltx2.ltx2_model("2.3", depth=1),
    "LTX-Video": lambda: tiny_ltx2.ltxv_model(depth=1),
}

_clear = cleared_after_module()


def test_every_registered_family_has_a_tiny_model_here():
    assert sorted(TINY) == sorted(f.name for f in registry.FAMILIES)


@pytest.mark.parametrize("name", list(TINY))
def test_exactly_one_family_claims_each_model(name):
    diffusion_model = TINY[name]().get_model_object("diffusion_model")
    claims = [f.name for f in registry.FAMILIES if f.matches(diffusion_model)]
    assert claims == [name]
    assert registry.detect_family(diffusion_model).name == name


@pytest.mark.parametrize("name", ["Z-Image", "Flux.2", "Chroma Radiance", "HunyuanImage 2.1"])
def test_detection_does_not_depend_on_the_order(name, monkeypatch):
    diffusion_model = TINY[name]().get_model_object("diffusion_model")
    monkeypatch.setattr(registry, "FAMILIES", tuple(reversed(registry.FAMILIES)))
    assert registry.detect_family(diffusion_model).name == name


def test_a_known_class_of_an_unknown_variant_is_refused_by_name():
    diffusion_model = tiny_models.flux_model(depth=1).get_model_object("diffusion_model")
    diffusion_model.params.txt_ids_dims = [0, 3]  # numbers its text on axes no Flux variant here uses
    with pytest.raises(UnsupportedModelError, match=r"its network is Flux, the class of Flux\.1, Flux\.2, "
                                                    r"LongCat-Image, Ovis-Image.*Supported: Flux\.1"):
        registry.detect_family(diffusion_model)


def test_two_families_claiming_one_model_is_a_bug_said_as_such(monkeypatch):
    diffusion_model = tiny_models.flux_model(depth=1).get_model_object("diffusion_model")
    flux = next(f for f in registry.FAMILIES if f.name == "Flux.1")
    monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, flux))
    with pytest.raises(RuntimeError, match=r"\['Flux.1', 'Flux.1'\] all claim Flux"):
        registry.detect_family(diffusion_model)
