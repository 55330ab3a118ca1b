"""Test-only custom nodes, installed next to the pack in the server tier's ComfyUI.

Every folder (or .py file) in tests/server/fixture_nodes/ is copied into the session server's
custom_nodes/ (see the `comfy_server_extra_custom_nodes` fixture). Node ids start with
"ConceptAttentionTest" so they never collide with the pack's own.

Besides a node that fails on purpose, this pack hands out tiny random-weight models that the
stock loaders cannot make small:
  ConceptAttentionTestTinyFlux      MODEL  Flux.1 dev (hidden 64, 3 double + 1 single block),
                                           built from comfy.supported_models.Flux like ComfyUI's loader
  ConceptAttentionTestTinyFluxClip  CLIP   ComfyUI's Flux text encoder (CLIP-L + T5) with tiny configs
  ConceptAttentionTestTinyUNet      MODEL  an SD1.5-style UNet (not a dual-stream DiT: unsupported)
The builders copy tests/comfy/tiny_models.py (same configs, same seeded values), because this
folder runs inside the server's custom_nodes/ where the tests package is not importable.
"""

import torch

FLUX_CONTEXT_DIM = 64


def _randomize(module, seed, std=0.08):
    """ComfyUI's ops skip weight init; give every parameter small, seeded random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tensors = list(module.named_parameters()) + [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
        for name, p in sorted(tensors, key=lambda kv: kv[0]):
            values = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            if name.endswith("norm.weight") or name.endswith("norm.scale") or ".ln_" in name:
                values = 1.0 + values
            p.copy_(values.to(p.dtype))
    return module


def _patcher(model):
    import comfy.model_management
    import comfy.model_patcher

    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=torch.device("cpu"))


def tiny_flux_model(seed=0, depth=3, single_depth=1, guidance=True):
    import comfy.supported_models

    unet_config = {
        "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32,
        "context_in_dim": FLUX_CONTEXT_DIM, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2,
        "depth": depth, "depth_single_blocks": single_depth, "axes_dim": [8, 12, 12], "theta": 10000,
        "patch_size": 2, "qkv_bias": True, "guidance_embed": guidance, "txt_ids_dims": [],
    }
    config = comfy.supported_models.Flux(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _randomize(model.diffusion_model, seed)
    return _patcher(model)


def _tiny_t5_config(d_model):
    return {
        "d_ff": 96, "d_kv": 16, "d_model": d_model, "decoder_start_token_id": 0, "dropout_rate": 0.0,
        "eos_token_id": 1, "dense_act_fn": "gelu_pytorch_tanh", "initializer_factor": 1.0,
        "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "t5",
        "num_decoder_layers": 2, "num_heads": 4, "num_layers": 2, "output_past": True, "pad_token_id": 0,
        "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "vocab_size": 32128,
    }


def _tiny_clip_l_config():
    return {
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
        "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": 32, "initializer_factor": 1.0,
        "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 2,
        "num_hidden_layers": 2, "pad_token_id": 1, "projection_dim": 32, "torch_dtype": "float32",
        "vocab_size": 49408,
    }


def tiny_flux_clip(seed=1):
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    import comfy.text_encoders.flux
    import comfy.text_encoders.t5

    class TinyFluxClipModel(comfy.text_encoders.flux.FluxClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            torch.nn.Module.__init__(self)
            self.clip_l = comfy.sd1_clip.SDClipModel(
                device=device, dtype=dtype, return_projected_pooled=False, model_options=model_options,
                textmodel_json_config=_tiny_clip_l_config())
            self.t5xxl = comfy.sd1_clip.SDClipModel(
                device=device, dtype=dtype, textmodel_json_config=_tiny_t5_config(FLUX_CONTEXT_DIM),
                special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                model_options={**model_options, "model_name": "t5xxl"})
            self.dtypes = {dtype}

    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.flux.FluxTokenizer, TinyFluxClipModel)
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32})
    _randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


def tiny_unet_model(seed=3):
    """An SD1.5-style UNet (cross-attention to the text, no text stream): 1.6 M parameters."""
    import comfy.supported_models

    unet_config = {
        "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32,
        "num_res_blocks": [1, 1], "channel_mult": [1, 2], "transformer_depth": [1, 1],
        "transformer_depth_output": [1, 1, 1, 1], "transformer_depth_middle": 1,
        "use_spatial_transformer": True, "legacy": False, "adm_in_channels": None, "context_dim": 768,
        "use_linear_in_transformer": False, "use_temporal_attention": False, "num_heads": 2,
        "num_head_channels": -1,
    }
    config = comfy.supported_models.SD15(unet_config)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _randomize(model.diffusion_model, seed, std=0.05)
    return _patcher(model)


class ConceptAttentionTestRaise:
    """An output node that fails on purpose: exercises the execution_error path."""

    CATEGORY = "testing"
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"message": ("STRING", {"default": "failure requested by the test"})}}

    def run(self, message):
        raise RuntimeError(message)


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
        return (tiny_flux_model(seed=seed),)


class ConceptAttentionTestTinyFluxClip(_SeededBuilder):
    """ComfyUI's Flux text encoder (CLIP-L + T5) with tiny configs and random weights."""

    RETURN_TYPES = ("CLIP",)

    def build(self, seed):
        return (tiny_flux_clip(seed=seed),)


class ConceptAttentionTestTinyUNet(_SeededBuilder):
    """A tiny random-weight SD1.5-style UNet MODEL: a model ConceptAttention does not support."""

    RETURN_TYPES = ("MODEL",)

    def build(self, seed):
        return (tiny_unet_model(seed=seed),)


NODE_CLASS_MAPPINGS = {
    "ConceptAttentionTestRaise": ConceptAttentionTestRaise,
    "ConceptAttentionTestTinyFlux": ConceptAttentionTestTinyFlux,
    "ConceptAttentionTestTinyFluxClip": ConceptAttentionTestTinyFluxClip,
    "ConceptAttentionTestTinyUNet": ConceptAttentionTestTinyUNet,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ConceptAttentionTestRaise": "Raise (ConceptAttention tests)",
    "ConceptAttentionTestTinyFlux": "Tiny Flux.1 (ConceptAttention tests)",
    "ConceptAttentionTestTinyFluxClip": "Tiny Flux CLIP (ConceptAttention tests)",
    "ConceptAttentionTestTinyUNet": "Tiny UNet (ConceptAttention tests)",
}
