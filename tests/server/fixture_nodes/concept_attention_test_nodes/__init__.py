"""Test-only custom nodes, installed next to the pack in the server tier's ComfyUI.

Every folder (or .py file) in tests/server/fixture_nodes/ is copied into the session server's
custom_nodes/ (see the `comfy_server_extra_custom_nodes` fixture). Node ids start with
"ConceptAttentionTest" so they never collide with the pack's own.

Besides a node that fails on purpose and one that reports the pack's re-query cache, this pack hands out tiny
random-weight models that the stock loaders cannot make small:
  ConceptAttentionTestTinyFlux      MODEL  Flux.1 dev (hidden 64, 3 double + 1 single block),
                                           built from comfy.supported_models.Flux like ComfyUI's loader
  ConceptAttentionTestTinyFluxClip  CLIP   ComfyUI's Flux text encoder (CLIP-L + T5) with tiny configs
  ConceptAttentionTestTinyKleinClip CLIP   ComfyUI's Flux.2 Klein text encoder (a Qwen3, three hidden
                                           layers concatenated) with a tiny config: what CLIPLoader
                                           type flux2 makes of qwen_3_4b / qwen_3_8b
  ConceptAttentionTestTinyQwenImage MODEL  Qwen-Image (hidden 64 = 2 heads of 32, 3 blocks; edit_2511: the
                                           Edit 2511 reference method), built from
                                           comfy.supported_models.QwenImage like ComfyUI's loader
  ConceptAttentionTestTinyQwenImageClip
                                    CLIP   ComfyUI's Qwen-Image text encoder (Qwen2.5-VL, system prompt
                                           dropped from its output) with a tiny config: what CLIPLoader
                                           type qwen_image makes of qwen_2.5_vl_7b
  ConceptAttentionTestTinyUNet      MODEL  an SD1.5-style UNet (not a dual-stream DiT: unsupported)
  ConceptAttentionTestTinyCogVideoX MODEL  CogVideoX-5B text to video (3 heads of 32, 2 blocks, 3-D RoPE), built
                                           from comfy.supported_models.CogVideoX_T2V like ComfyUI's loader
  ConceptAttentionTestTinyCogVideoXClip
                                    CLIP   ComfyUI's CogVideoX text encoder (T5-XXL, 226-token padding) with a
                                           tiny T5: what CLIPLoader type cogvideox makes of t5xxl
  ConceptAttentionTestTinyCogVideoXVAE
                                    VAE    ComfyUI's CogVideoX VAE (4x time, 8x space, 16 channels) at tiny
                                           widths: VAELoader builds it at full width whatever the file holds
  ConceptAttentionTestTinyMiniMax   MODEL  MiniMax H3 (hidden 64, 2 blocks), built from comfy.supported_models.MiniMaxH3
                                           like ComfyUI's loader (the browser tier's example runs; the server tier's
                                           UNETLoader reads a small file of it)
  ConceptAttentionTestTinyMiniMaxClip
                                    CLIP   ComfyUI's MiniMax H3 text encoder (Qwen3-VL with its vision tower) with a
                                           tiny config: what CLIPLoader type minimax makes of qwen3vl_32b
  ConceptAttentionTestTinyMiniMaxVAE
                                    VAE    ComfyUI's MiniMax H3 video VAE (16x space, latent frames of 1, 4, 4, 4, 4
                                           pictures) at tiny widths
  ConceptAttentionTestTinyMiniMaxAudioVAE
                                    VAE    ComfyUI's MiniMax H3 audio VAE (40 latent frames a second, stereo 32 kHz) at
                                           tiny widths
  ConceptAttentionTestTinySAM3      MODEL  SAM 3.1 (a 2-block, 64-wide ViT trunk, 64-wide detector and tracker), built
                                           from comfy.supported_models.SAM31 like Load Checkpoint: ComfyUI builds every
                                           SAM 3 file at full width (tests/comfy/tiny/tiny_sam3.py says more)
The builders are those of tests/comfy/tiny/tiny_models.py, tests/comfy/tiny/tiny_text_encoders.py and
tests/comfy/tiny/tiny_cogvideox.py, the same models the in-process tests use. (A tiny Flux.2 Klein DiT
or CogVideoX needs no node on the server tier: the stock UNETLoader reads a small file of either,
see tests/server/model_files.py; the CogVideoX model node stands in for the browser tier's example
runs. A Qwen-Image file cannot be small: ComfyUI's detection reads only its block count and input
channels from the file and builds every Qwen-Image at full width, 24 heads of 128 over 3584-wide
text, hence the model node.)
"""

import importlib
import importlib.machinery
import importlib.util
import os
import sys


def _tiny_models():
    """tests/comfy/tiny/tiny_models.py, loaded by path: the tests package is not importable in the server.

    The harness (tests/server/comfy_server.py) passes its location in CONCEPT_ATTENTION_TINY_MODELS.
    """
    path = os.environ["CONCEPT_ATTENTION_TINY_MODELS"]
    spec = importlib.util.spec_from_file_location("concept_attention_tiny_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny_models = _tiny_models()


def tiny_text_encoders():
    """tests/comfy/tiny/tiny_text_encoders.py (next to tiny_models.py), imported on first use under the name
    the tests give it, concept_attention_tests.comfy.tiny.tiny_text_encoders: it imports tiny_models by that
    package name, so the two package levels are registered here by their folders (as tests/conftest.py
    does in pytest)."""
    comfy_tests = os.path.dirname(os.path.dirname(os.path.abspath(os.environ["CONCEPT_ATTENTION_TINY_MODELS"])))
    for name, folder in (("concept_attention_tests", os.path.dirname(comfy_tests)),
                         ("concept_attention_tests.comfy", comfy_tests)):
        if name not in sys.modules:
            spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            spec.submodule_search_locations = [folder]
            sys.modules[name] = importlib.util.module_from_spec(spec)
    return importlib.import_module("concept_attention_tests.comfy.tiny.tiny_text_encoders")


def tiny_cogvideox():
    """tests/comfy/tiny/tiny_cogvideox.py, imported like tiny_text_encoders (whose import registers the package names it
    needs)."""
    tiny_text_encoders()
    return importlib.import_module("concept_attention_tests.comfy.tiny.tiny_cogvideox")


def tiny_minimax():
    """tests/comfy/tiny/tiny_minimax.py, imported like tiny_cogvideox."""
    tiny_text_encoders()
    return importlib.import_module("concept_attention_tests.comfy.tiny.tiny_minimax")


def tiny_sam3():
    """tests/comfy/tiny/tiny_sam3.py, imported like tiny_cogvideox."""
    tiny_text_encoders()
    return importlib.import_module("concept_attention_tests.comfy.tiny.tiny_sam3")


class _OutputNode:
    CATEGORY = "testing"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ()


class ConceptAttentionTestRaise(_OutputNode):
    """An output node that fails on purpose: exercises the execution_error path."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"message": ("STRING", {"default": "failure requested by the test"})}}

    def run(self, message):
        raise RuntimeError(message)


class ConceptAttentionTestRequeryCache(_OutputNode):
    """An output node that reports the pack's re-query cache (entries, bytes, budget) after a saliency, and the
    server's resident memory once garbage is collected and the C allocator has handed its free pages back (so what
    it reports is live memory, not the allocator's moods): the server tier checks eviction and growth from outside.
    The pack's module is found by the name ComfyUI gave it (its folder's path), so nothing in the pack exists for
    the tests' sake."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"saliency": ("SALIENCY",)}}

    def run(self, saliency):
        [cache] = [m for name, m in list(sys.modules.items()) if name.endswith(".concept_patch.requery.cache")]
        state = {"entries": len(cache.CACHE.entries), "bytes": cache.CACHE.nbytes, "budget": cache.CACHE.budget,
                 "entry_bytes": [e.nbytes for e in cache.CACHE.entries.values()], "rss_mib": _live_rss_mib()}
        return {"ui": {"requery_cache": [state]}}


def _live_rss_mib() -> float:
    """Resident memory after gc and glibc's malloc_trim (where there is one)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _SeededBuilder:
    CATEGORY = "testing"
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}


class ConceptAttentionTestTinyFlux(_SeededBuilder):
    """A tiny random-weight Flux.1 dev MODEL (the stock loaders only read full-width Flux)."""

    RETURN_TYPES = ("MODEL",)

    def build(self, seed):
        return (tiny_models.flux_model(seed=seed),)


class ConceptAttentionTestTinyFluxClip(_SeededBuilder):
    """ComfyUI's Flux text encoder (CLIP-L + T5) with tiny configs and random weights."""

    RETURN_TYPES = ("CLIP",)

    def build(self, seed):
        return (tiny_models.flux_clip(seed=seed),)


class ConceptAttentionTestTinyKleinClip:
    """ComfyUI's Flux.2 Klein text encoder (Qwen3 4B or 8B layout) with a tiny config and random weights."""

    CATEGORY = "testing"
    FUNCTION = "build"
    RETURN_TYPES = ("CLIP",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"variant": (["4b", "8b"], {"default": "4b"}),
                             "seed": ("INT", {"default": 12, "min": 0, "max": 2**31 - 1})}}

    def build(self, variant, seed):
        return (tiny_text_encoders().klein_clip(variant, seed=seed),)


class ConceptAttentionTestTinyQwenImage:
    """A tiny random-weight Qwen-Image (or Qwen-Image-Edit 2511) MODEL: the stock UNETLoader builds every
    Qwen-Image at full width, whatever the file holds."""

    CATEGORY = "testing"
    FUNCTION = "build"
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1}),
                             "edit_2511": ("BOOLEAN", {"default": False})}}

    def build(self, seed, edit_2511):
        return (tiny_models.qwen_image_model(seed=seed, edit_2511=edit_2511),)


class ConceptAttentionTestTinyQwenImageClip:
    """ComfyUI's Qwen-Image text encoder (Qwen2.5-VL) with a tiny config and random weights."""

    CATEGORY = "testing"
    FUNCTION = "build"
    RETURN_TYPES = ("CLIP",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 15, "min": 0, "max": 2**31 - 1})}}

    def build(self, seed):
        return (tiny_text_encoders().qwen_image_clip(seed=seed),)


class ConceptAttentionTestTinyUNet(_SeededBuilder):
    """A tiny random-weight SD1.5-style UNet MODEL: a model ConceptAttention does not support."""

    RETURN_TYPES = ("MODEL",)

    def build(self, seed):
        return (tiny_models.unet_model(seed=seed),)


class ConceptAttentionTestTinyCogVideoX(_SeededBuilder):
    """A tiny random-weight CogVideoX-5B (text to video) MODEL."""

    RETURN_TYPES = ("MODEL",)

    def build(self, seed):
        return (tiny_cogvideox().cogvideox_model("5b", depth=2, seed=seed),)


class ConceptAttentionTestTinyCogVideoXClip(_SeededBuilder):
    """ComfyUI's CogVideoX text encoder (a T5-XXL) with a tiny config and random weights."""

    RETURN_TYPES = ("CLIP",)

    def build(self, seed):
        return (tiny_cogvideox().cogvideox_clip(seed=seed),)


class ConceptAttentionTestTinyCogVideoXVAE(_SeededBuilder):
    """ComfyUI's CogVideoX VAE with tiny widths and random weights."""

    RETURN_TYPES = ("VAE",)

    def build(self, seed):
        return (tiny_cogvideox().cogvideox_vae(seed=seed),)


class ConceptAttentionTestTinyMiniMax(_SeededBuilder):
    """A tiny random-weight MiniMax H3 MODEL (video + audio)."""

    RETURN_TYPES = ("MODEL",)

    def build(self, seed):
        return (tiny_minimax().minimax_model(depth=2, seed=seed),)


class ConceptAttentionTestTinyMiniMaxClip(_SeededBuilder):
    """ComfyUI's MiniMax H3 text encoder (Qwen3-VL) with a tiny config and random weights."""

    RETURN_TYPES = ("CLIP",)

    def build(self, seed):
        return (tiny_minimax().minimax_clip(seed=seed),)


class ConceptAttentionTestTinyMiniMaxVAE(_SeededBuilder):
    """ComfyUI's MiniMax H3 video VAE with tiny widths and random weights."""

    RETURN_TYPES = ("VAE",)

    def build(self, seed):
        return (tiny_minimax().minimax_video_vae(seed=seed),)


class ConceptAttentionTestTinyMiniMaxAudioVAE(_SeededBuilder):
    """ComfyUI's MiniMax H3 audio VAE with tiny widths and random weights."""

    RETURN_TYPES = ("VAE",)

    def build(self, seed):
        return (tiny_minimax().minimax_audio_vae(seed=seed),)


class ConceptAttentionTestTinySAM3(_SeededBuilder):
    """ComfyUI's SAM 3.1 (what Load Checkpoint makes of sam3.1_multiplex_fp16) at tiny widths, random weights."""

    RETURN_TYPES = ("MODEL",)

    def build(self, seed):
        return (tiny_sam3().sam3_model(seed=seed),)


NODE_CLASS_MAPPINGS = {
    "ConceptAttentionTestRaise": ConceptAttentionTestRaise,
    "ConceptAttentionTestRequeryCache": ConceptAttentionTestRequeryCache,
    "ConceptAttentionTestTinyFlux": ConceptAttentionTestTinyFlux,
    "ConceptAttentionTestTinyFluxClip": ConceptAttentionTestTinyFluxClip,
    "ConceptAttentionTestTinyKleinClip": ConceptAttentionTestTinyKleinClip,
    "ConceptAttentionTestTinyQwenImage": ConceptAttentionTestTinyQwenImage,
    "ConceptAttentionTestTinyQwenImageClip": ConceptAttentionTestTinyQwenImageClip,
    "ConceptAttentionTestTinyUNet": ConceptAttentionTestTinyUNet,
    "ConceptAttentionTestTinyCogVideoX": ConceptAttentionTestTinyCogVideoX,
    "ConceptAttentionTestTinyCogVideoXClip": ConceptAttentionTestTinyCogVideoXClip,
    "ConceptAttentionTestTinyCogVideoXVAE": ConceptAttentionTestTinyCogVideoXVAE,
    "ConceptAttentionTestTinyMiniMax": ConceptAttentionTestTinyMiniMax,
    "ConceptAttentionTestTinyMiniMaxClip": ConceptAttentionTestTinyMiniMaxClip,
    "ConceptAttentionTestTinyMiniMaxVAE": ConceptAttentionTestTinyMiniMaxVAE,
    "ConceptAttentionTestTinyMiniMaxAudioVAE": ConceptAttentionTestTinyMiniMaxAudioVAE,
    "ConceptAttentionTestTinySAM3": ConceptAttentionTestTinySAM3,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ConceptAttentionTestRaise": "Raise (ConceptAttention tests)",
    "ConceptAttentionTestRequeryCache": "Re-query cache state (ConceptAttention tests)",
    "ConceptAttentionTestTinyFlux": "Tiny Flux.1 (ConceptAttention tests)",
    "ConceptAttentionTestTinyFluxClip": "Tiny Flux CLIP (ConceptAttention tests)",
    "ConceptAttentionTestTinyKleinClip": "Tiny Flux.2 Klein CLIP (ConceptAttention tests)",
    "ConceptAttentionTestTinyQwenImage": "Tiny Qwen-Image (ConceptAttention tests)",
    "ConceptAttentionTestTinyQwenImageClip": "Tiny Qwen-Image CLIP (ConceptAttention tests)",
    "ConceptAttentionTestTinyUNet": "Tiny UNet (ConceptAttention tests)",
    "ConceptAttentionTestTinyCogVideoX": "Tiny CogVideoX (ConceptAttention tests)",
    "ConceptAttentionTestTinyCogVideoXClip": "Tiny CogVideoX CLIP (ConceptAttention tests)",
    "ConceptAttentionTestTinyCogVideoXVAE": "Tiny CogVideoX VAE (ConceptAttention tests)",
    "ConceptAttentionTestTinyMiniMax": "Tiny MiniMax H3 (ConceptAttention tests)",
    "ConceptAttentionTestTinyMiniMaxClip": "Tiny MiniMax H3 CLIP (ConceptAttention tests)",
    "ConceptAttentionTestTinyMiniMaxVAE": "Tiny MiniMax H3 VAE (ConceptAttention tests)",
    "ConceptAttentionTestTinyMiniMaxAudioVAE": "Tiny MiniMax H3 Audio VAE (ConceptAttention tests)",
    "ConceptAttentionTestTinySAM3": "Tiny SAM 3.1 (ConceptAttention tests)",
}
