"""Test-only custom nodes of the LTX-2 family, installed next to the pack in the server tier's ComfyUI (as every
folder of tests/server/fixture_nodes/ is):

  ConceptAttentionTestTinyLTX2             MODEL   LTX-2 or LTX-2.3 (comfy's LTXAVModel: video and audio 2 heads of
                                                   32, 3 blocks), built from comfy.supported_models like ComfyUI's
                                                   loader (whose detection gives every LTX-2 file 32 heads)
  ConceptAttentionTestTinyLTX2Clip         CLIP    ComfyUI's LTX-2 text encoder (LTXAVTEModel over Gemma 3) with a
                                                   tiny Gemma and a small trained SentencePiece model
  ConceptAttentionTestTinyLTX2AudioLatent  LATENT  an empty LTX-2 audio latent [1, 8, frames, 16], as
                                                   LTXVEmptyLatentAudio makes one (which needs the audio VAE)

The builders are tests/comfy/tiny/tiny_ltx2.py's, the models the in-process tests use.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys


def tiny_ltx2():
    """tests/comfy/tiny/tiny_ltx2.py under the name the tests give it (concept_attention_tests.comfy.tiny.tiny_ltx2):
    the two package levels it imports through are registered by their folders, as tests/conftest.py does. The
    harness (tests/server/comfy_server.py) passes the tiny models' location in CONCEPT_ATTENTION_TINY_MODELS."""
    comfy_tests = os.path.dirname(os.path.dirname(os.path.abspath(os.environ["CONCEPT_ATTENTION_TINY_MODELS"])))
    for name, folder in (("concept_attention_tests", os.path.dirname(comfy_tests)),
                         ("concept_attention_tests.comfy", comfy_tests)):
        if name not in sys.modules:
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [folder]
            sys.modules[name] = importlib.util.module_from_spec(spec)
    return importlib.import_module("concept_attention_tests.comfy.tiny.tiny_ltx2")


_VARIANT = (["2", "2.3"],)
_SEED = ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})


class ConceptAttentionTestTinyLTX2:
    """A tiny random-weight LTX-2 MODEL of a variant."""

    CATEGORY = "testing"
    FUNCTION = "build"
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"variant": _VARIANT, "seed": _SEED}}

    def build(self, variant, seed):
        return (tiny_ltx2().ltx2_model(variant, seed=seed),)


class ConceptAttentionTestTinyLTX2Clip:
    """ComfyUI's LTX-2 text encoder with a tiny Gemma 3 and random weights."""

    CATEGORY = "testing"
    FUNCTION = "build"
    RETURN_TYPES = ("CLIP",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"variant": _VARIANT, "seed": _SEED}}

    def build(self, variant, seed):
        return (tiny_ltx2().ltx2_clip(variant, seed=seed),)


class ConceptAttentionTestTinyLTX2AudioLatent:
    """An empty LTX-2 audio latent of some latent frames."""

    CATEGORY = "testing"
    FUNCTION = "build"
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("INT", {"default": 5, "min": 1, "max": 4096})}}

    def build(self, frames):
        import torch

        module = tiny_ltx2()
        return ({"samples": torch.zeros(1, module.AUDIO_CHANNELS, frames, module.AUDIO_BINS), "type": "audio"},)


NODE_CLASS_MAPPINGS = {
    "ConceptAttentionTestTinyLTX2": ConceptAttentionTestTinyLTX2,
    "ConceptAttentionTestTinyLTX2Clip": ConceptAttentionTestTinyLTX2Clip,
    "ConceptAttentionTestTinyLTX2AudioLatent": ConceptAttentionTestTinyLTX2AudioLatent,
}
