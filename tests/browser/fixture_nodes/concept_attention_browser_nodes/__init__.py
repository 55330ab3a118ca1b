"""Test-only nodes for the browser tier: a tiny random-weight Flux.1 and its text encoder.

Copied into the browser tier's ComfyUI server (tests/browser/conftest.py) so a workflow can run
the pack's nodes end to end in a few seconds on the CPU. Built like tests/comfy/tiny_models.py
(ComfyUI's own Flux classes with small widths, a real comfy.sd.CLIP), with a few lines copied
rather than imported: custom nodes load outside the test package. Node ids start with
"ConceptAttentionBrowserTest" so they never collide with the pack or other fixture packs.
"""

from __future__ import annotations

import dataclasses

import torch

_CACHE: dict = {}


def _randomize(module: torch.nn.Module, seed: int, std: float = 0.08):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tensors = list(module.named_parameters()) + [
            (n, b) for n, b in module.named_buffers() if b.is_floating_point()
        ]
        for name, p in sorted(tensors, key=lambda kv: kv[0]):
            values = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            if name.endswith("norm.weight") or name.endswith("norm.scale") or ".ln_" in name:
                values = 1.0 + values
            p.copy_(values.to(p.dtype))
    return module


def tiny_flux_model(seed: int = 0):
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models
    from comfy.ldm.flux.model import FluxParams

    unet_config = {
        "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32,
        "context_in_dim": 64, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2,
        "depth": 3, "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000,
        "patch_size": 2, "qkv_bias": True, "guidance_embed": True, "txt_ids_dims": [],
    }
    if "txt_ids_dims" not in {f.name for f in dataclasses.fields(FluxParams)}:
        del unet_config["txt_ids_dims"]  # ComfyUI 0.3.x
    config = comfy.supported_models.Flux(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _randomize(model.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(
        model, load_device=comfy.model_management.get_torch_device(), offload_device=torch.device("cpu"))


def tiny_flux_clip(seed: int = 1):
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    import comfy.text_encoders.flux
    import comfy.text_encoders.t5

    t5_config = {
        "d_ff": 96, "d_kv": 16, "d_model": 64, "decoder_start_token_id": 0, "dropout_rate": 0.0,
        "eos_token_id": 1, "dense_act_fn": "gelu_pytorch_tanh", "initializer_factor": 1.0,
        "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "t5",
        "num_decoder_layers": 2, "num_heads": 4, "num_layers": 2, "output_past": True, "pad_token_id": 0,
        "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "vocab_size": 32128,
    }
    clip_l_config = {
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
        "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": 32, "initializer_factor": 1.0,
        "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 2,
        "num_hidden_layers": 2, "pad_token_id": 1, "projection_dim": 32, "torch_dtype": "float32",
        "vocab_size": 49408,
    }

    class TinyFluxClipModel(comfy.text_encoders.flux.FluxClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            torch.nn.Module.__init__(self)
            self.clip_l = comfy.sd1_clip.SDClipModel(
                device=device, dtype=dtype, return_projected_pooled=False, model_options=model_options,
                textmodel_json_config=clip_l_config)
            self.t5xxl = comfy.sd1_clip.SDClipModel(
                device=device, dtype=dtype, textmodel_json_config=t5_config,
                special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                model_options={**model_options, "model_name": "t5xxl"})
            self.dtypes = {dtype}

    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.flux.FluxTokenizer, TinyFluxClipModel)
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32})
    _randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


class ConceptAttentionBrowserTestTinyFlux:
    """A tiny random-weight Flux.1-dev MODEL (3 dual-stream blocks, 64 wide)."""

    CATEGORY = "testing"
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 1000})}}

    def load(self, seed):
        key = ("model", seed)
        if key not in _CACHE:
            _CACHE[key] = tiny_flux_model(seed)
        return (_CACHE[key],)


class ConceptAttentionBrowserTestTinyFluxClip:
    """The matching tiny CLIP-L + T5 text encoder (a real comfy.sd.CLIP)."""

    CATEGORY = "testing"
    FUNCTION = "load"
    RETURN_TYPES = ("CLIP",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 1, "min": 0, "max": 1000})}}

    def load(self, seed):
        key = ("clip", seed)
        if key not in _CACHE:
            _CACHE[key] = tiny_flux_clip(seed)
        return (_CACHE[key],)


NODE_CLASS_MAPPINGS = {
    "ConceptAttentionBrowserTestTinyFlux": ConceptAttentionBrowserTestTinyFlux,
    "ConceptAttentionBrowserTestTinyFluxClip": ConceptAttentionBrowserTestTinyFluxClip,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ConceptAttentionBrowserTestTinyFlux": "Tiny Flux (browser tests)",
    "ConceptAttentionBrowserTestTinyFluxClip": "Tiny Flux CLIP (browser tests)",
}
