"""Test-only custom nodes of the Wan family, installed next to the pack in the server tier's ComfyUI (as every
folder of tests/server/fixture_nodes/ is):

  ConceptAttentionTestTinyWan      MODEL  Wan 2.1 / 2.2 (hidden 64 = 2 heads of 32, 3 blocks; t2v, i2v, ti2v or vace),
                                          built from comfy.supported_models like ComfyUI's loader. A Wan file cannot
                                          be small: ComfyUI's detection gives every Wan 128-wide heads over
                                          4096-wide text.
  ConceptAttentionTestTinyWanClip  CLIP   ComfyUI's Wan text encoder (UMT5-XXL) with a tiny config and a small
                                          trained SentencePiece model: what CLIPLoader type wan makes of
                                          umt5_xxl

The builders are tests/comfy/tiny/tiny_wan.py's, the models the in-process tests use.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys


def tiny_wan():
    """tests/comfy/tiny/tiny_wan.py under the name the tests give it (concept_attention_tests.comfy.tiny.tiny_wan):
    the two package levels it imports through are registered by their folders, as tests/conftest.py does. The
    harness (tests/server/comfy_server.py) passes the tiny models' location in CONCEPT_ATTENTION_TINY_MODELS."""
    comfy_tests = os.path.dirname(os.path.dirname(os.path.abspath(os.environ["CONCEPT_ATTENTION_TINY_MODELS"])))
    for name, folder in (("concept_attention_tests", os.path.dirname(comfy_tests)),
                         ("concept_attention_tests.comfy", comfy_tests)):
        if name not in sys.modules:
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [folder]
            sys.modules[name] = importlib.util.module_from_spec(spec)
    return importlib.import_module("concept_attention_tests.comfy.tiny.tiny_wan")


class ConceptAttentionTestTinyWan:
    """A tiny random-weight Wan MODEL of a variant (the stock loaders only read full-width Wan)."""

    CATEGORY = "testing"
    FUNCTION = "build"
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"variant": (["t2v", "i2v", "ti2v", "vace"],),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}

    def build(self, variant, seed):
        return (tiny_wan().wan_model(variant, seed=seed),)


class ConceptAttentionTestTinyWanClip:
    """ComfyUI's Wan text encoder (UMT5-XXL) with a tiny config and random weights."""

    CATEGORY = "testing"
    FUNCTION = "build"
    RETURN_TYPES = ("CLIP",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}

    def build(self, seed):
        return (tiny_wan().wan_clip(seed=seed),)


NODE_CLASS_MAPPINGS = {
    "ConceptAttentionTestTinyWan": ConceptAttentionTestTinyWan,
    "ConceptAttentionTestTinyWanClip": ConceptAttentionTestTinyWanClip,
}
