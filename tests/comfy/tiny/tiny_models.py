"""Tiny random-weight models built from ComfyUI's own classes, wrapped in real ModelPatchers.

Flux.1 and SD3/SD3.5 come from comfy.supported_models + comfy.model_base exactly as ComfyUI's
loaders build them, only with small widths; text encoders are ComfyUI's CLIP objects over
small CLIP-L / T5 configs, so nodes receive the objects ComfyUI would pass them.
"""

from __future__ import annotations

import torch

FLUX_CONTEXT_DIM = 64
SD3_CONTEXT_DIM = 4096  # SD3 pads CLIP-L|G states to 4096 wide


def randomize(module: torch.nn.Module, seed: int, std: float = 0.08):
    """ComfyUI's ops skip weight init; give every parameter small, seeded random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Buffers too: SD3's pos_embed is an uninitialised buffer.
        tensors = list(module.named_parameters()) + [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
        for name, p in sorted(tensors, key=lambda kv: kv[0]):
            values = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            if name.endswith("norm.weight") or name.endswith("norm.scale") or ".ln_" in name:
                values = 1.0 + values
            p.copy_(values.to(p.dtype))
    return module


def patcher(model):
    import comfy.model_management
    import comfy.model_patcher

    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=torch.device("cpu"))


def flux_model(dtype=torch.float32, depth=3, single_depth=1, guidance=True, seed=0, fill=False):
    """Flux.1 (dev when guidance=True, schnell otherwise): hidden 64, 2 heads of 32."""
    import comfy.supported_models

    unet_config = {
        "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32,
        "context_in_dim": FLUX_CONTEXT_DIM, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2,
        "depth": depth, "depth_single_blocks": single_depth, "axes_dim": [8, 12, 12], "theta": 10000,
        "patch_size": 2, "qkv_bias": True, "guidance_embed": guidance, "txt_ids_dims": [],
    }
    import dataclasses

    from comfy.ldm.flux.model import FluxParams

    if "txt_ids_dims" not in {f.name for f in dataclasses.fields(FluxParams)}:
        del unet_config["txt_ids_dims"]  # ComfyUI 0.3.x
    config_cls = comfy.supported_models.FluxInpaint if fill else comfy.supported_models.Flux
    if fill:
        unet_config["in_channels"] = 96
    config = config_cls(unet_config)
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    return patcher(model)


def sd3_model(dtype=torch.float32, depth=3, mmdit_x_layers=(), qk_norm="rms", seed=0):
    """SD3 / SD3.5: hidden 64·depth; mmdit_x_layers makes SD3.5-medium style MMDiT-X blocks."""
    import comfy.supported_models

    unet_config = {
        "in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": depth, "num_patches": 64 * 64,
        "pos_embed_max_size": 64, "pos_embed_scaling_factor": None, "pos_embed_offset": None,
        "adm_in_channels": SD3_POOLED_DIM, "context_embedder_config": {
            "target": "torch.nn.Linear", "params": {"in_features": SD3_CONTEXT_DIM, "out_features": 64 * depth}},
        "qk_norm": qk_norm, "x_block_self_attn_layers": list(mmdit_x_layers),
    }
    config = comfy.supported_models.SD3(unet_config)
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    return patcher(model)


def tiny_t5_config(d_model: int) -> dict:
    return {
        "d_ff": 96, "d_kv": 16, "d_model": d_model, "decoder_start_token_id": 0, "dropout_rate": 0.0,
        "eos_token_id": 1, "dense_act_fn": "gelu_pytorch_tanh", "initializer_factor": 1.0,
        "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "t5",
        "num_decoder_layers": 2, "num_heads": 4, "num_layers": 2, "output_past": True, "pad_token_id": 0,
        "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "vocab_size": 32128,
    }


def tiny_clip_l_config() -> dict:
    return {
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
        "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": 32, "initializer_factor": 1.0,
        "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 2,
        "num_hidden_layers": 2, "pad_token_id": 1, "projection_dim": 32, "torch_dtype": "float32",
        "vocab_size": 49408,
    }


def flux_clip(seed=1):
    """ComfyUI's Flux text-encoder pair (CLIP-L + T5) with tiny configs, as a real comfy.sd.CLIP."""
    import comfy.model_management
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
                textmodel_json_config=tiny_clip_l_config())
            self.t5xxl = comfy.sd1_clip.SDClipModel(
                device=device, dtype=dtype, textmodel_json_config=tiny_t5_config(FLUX_CONTEXT_DIM),
                special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                model_options={**model_options, "model_name": "t5xxl"})
            self.dtypes = {dtype}

    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.flux.FluxTokenizer, TinyFluxClipModel)
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32})
    randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


SD3_POOLED_DIM = 32 + 1280  # tiny CLIP-L pooled + the zeros SD3 puts where CLIP-G would be


def sd3_clip(seed=2):
    """ComfyUI's SD3 text encoder with only a tiny CLIP-L loaded (CLIP-G and T5 absent), as a real CLIP."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    import comfy.text_encoders.sd3_clip

    class TinySD3ClipModel(comfy.text_encoders.sd3_clip.SD3ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            torch.nn.Module.__init__(self)
            self.clip_l = comfy.sd1_clip.SDClipModel(
                layer="hidden", layer_idx=-1, device=device, dtype=dtype, layer_norm_hidden_state=False,
                return_projected_pooled=False, model_options=model_options, textmodel_json_config=tiny_clip_l_config())
            self.clip_g = None
            self.t5xxl = None
            self.t5_attention_mask = False
            self.dtypes = {dtype}

    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.sd3_clip.SD3Tokenizer, TinySD3ClipModel)
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32})
    randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


def vae(seed=3):
    """A real comfy.sd.VAE (AutoencoderKL, 16 latent channels, 8x downscale) with tiny widths."""
    import comfy.ldm.models.autoencoder
    import comfy.sd

    ddconfig = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    params = {"ddconfig": ddconfig, "embed_dim": 16}
    template = comfy.ldm.models.autoencoder.AutoencoderKL(**params)
    randomize(template, seed, std=0.1)
    return comfy.sd.VAE(sd=template.state_dict(), config={"params": params}, dtype=torch.float32)


def unet_model(seed=3):
    """An SD1.5-style UNet (cross-attention to the text, no text stream): a model ConceptAttention rejects."""
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
    randomize(model.diffusion_model, seed, std=0.05)
    return patcher(model)


def chroma_model(dtype=torch.float32, depth=3, single_depth=1, seed=0):
    """Chroma: Flux.1 blocks without modulation layers; hidden 64, 2 heads of 32."""
    import dataclasses

    import comfy.supported_models
    from comfy.ldm.chroma.model import ChromaParams

    unet_config = {
        "image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": FLUX_CONTEXT_DIM,
        "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": depth, "depth_single_blocks": single_depth,
        "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True,
        "in_dim": 64, "out_dim": 64, "hidden_dim": 32, "n_layers": 2, "txt_ids_dims": [], "vec_in_dim": None,
    }
    fields = {f.name for f in dataclasses.fields(ChromaParams)}
    unet_config = {k: v for k, v in unet_config.items() if k in fields or k == "image_model"}  # 0.3.x has fewer
    config = comfy.supported_models.Chroma(unet_config)
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    return patcher(model)


# Widths of the tiny LLM text encoders in tiny_text_encoders.py (their three concatenated hidden
# layers, or their last layer): each DiT below reads exactly its encoder's states.
FLUX2_DEV_CONTEXT_DIM = 96
KLEIN_4B_CONTEXT_DIM = 48
KLEIN_8B_CONTEXT_DIM = 72
LONGCAT_CONTEXT_DIM = 64
OVIS_CONTEXT_DIM = 32


def _flux_class_model(config_cls, unet_config, dtype, seed):
    """A Flux-class model through comfy.supported_models, with only the fields this ComfyUI's FluxParams has."""
    import dataclasses

    from comfy.ldm.flux.model import FluxParams

    fields = {f.name for f in dataclasses.fields(FluxParams)}
    config = config_cls({k: v for k, v in unet_config.items() if k in fields or k == "image_model"})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    return patcher(model)


def flux2_model(variant="dev", dtype=torch.float32, depth=3, single_depth=1, seed=0):
    """Flux.2 (global modulation, SiLU-gated MLPs, no biases, text on RoPE axis 3, 128-channel latent at
    patch 1): dev (guidance, Mistral width) or Klein 4B / 8B (no guidance, Qwen3 widths); hidden 64, 2 heads."""
    import comfy.supported_models

    context = {"dev": FLUX2_DEV_CONTEXT_DIM, "klein4b": KLEIN_4B_CONTEXT_DIM, "klein8b": KLEIN_8B_CONTEXT_DIM}[variant]
    unet_config = {
        "image_model": "flux2", "in_channels": 128, "out_channels": 128, "vec_in_dim": None,
        "context_in_dim": context, "hidden_size": 64, "mlp_ratio": 3.0, "num_heads": 2, "depth": depth,
        "depth_single_blocks": single_depth, "axes_dim": [8, 8, 8, 8], "theta": 2000, "patch_size": 1,
        "qkv_bias": False, "guidance_embed": variant == "dev", "txt_ids_dims": [3], "global_modulation": True,
        "mlp_silu_act": True, "ops_bias": False, "default_ref_method": "index", "ref_index_scale": 10.0,
    }
    return _flux_class_model(comfy.supported_models.Flux2, unet_config, dtype, seed)


def _text_on_rope_axes_config(context_dim: int, depth: int, single_depth: int, **extra) -> dict:
    """A Flux.1-block unet_config without guidance or pooled vector, its text on RoPE axes 1 and 2 (LongCat-Image,
    Ovis-Image)."""
    return {
        "image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": None,
        "context_in_dim": context_dim, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2,
        "depth": depth, "depth_single_blocks": single_depth, "axes_dim": [8, 12, 12], "theta": 10000,
        "patch_size": 2, "qkv_bias": True, "guidance_embed": False, "txt_ids_dims": [1, 2], **extra,
    }


def longcat_model(dtype=torch.float32, depth=3, single_depth=1, seed=0):
    """LongCat-Image: Flux.1 blocks, no guidance or pooled vector, text on RoPE axes 1 and 2."""
    import comfy.supported_models

    unet_config = _text_on_rope_axes_config(LONGCAT_CONTEXT_DIM, depth, single_depth)
    return _flux_class_model(comfy.supported_models.LongCatImage, unet_config, dtype, seed)


def ovis_model(dtype=torch.float32, depth=3, single_depth=1, seed=0):
    """Ovis-Image: Flux.1 blocks with SwiGLU ("yak") MLPs and txt_norm, text on RoPE axes 1 and 2."""
    import comfy.supported_models

    unet_config = _text_on_rope_axes_config(OVIS_CONTEXT_DIM, depth, single_depth, yak_mlp=True, txt_norm=True)
    return _flux_class_model(comfy.supported_models.Flux, unet_config, dtype, seed)


def chroma_radiance_model(dtype=torch.float32, depth=3, single_depth=1, seed=0, sequential_txt_ids=False):
    """Chroma Radiance: Chroma's blocks on 16-pixel patches of an RGB picture, a small NeRF head."""
    import dataclasses

    import comfy.supported_models
    from comfy.ldm.chroma_radiance.model import ChromaRadianceParams

    unet_config = {
        "image_model": "chroma_radiance", "in_channels": 3, "out_channels": 3, "context_in_dim": FLUX_CONTEXT_DIM,
        "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": depth, "depth_single_blocks": single_depth,
        "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 16, "qkv_bias": True,
        "in_dim": 64, "out_dim": 64, "hidden_dim": 32, "n_layers": 2, "txt_ids_dims": [], "vec_in_dim": None,
        "nerf_hidden_size": 16, "nerf_mlp_ratio": 2, "nerf_depth": 1, "nerf_max_freqs": 4, "nerf_tile_size": 0,
        "nerf_final_head_type": "conv", "nerf_embedder_dtype": torch.float32, "use_x0": False,
        "use_sequential_txt_ids": sequential_txt_ids,
    }
    fields = {f.name for f in dataclasses.fields(ChromaRadianceParams)}
    config = comfy.supported_models.ChromaRadiance({k: v for k, v in unet_config.items() if k in fields or k == "image_model"})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    return patcher(model)


QWEN_IMAGE_CONTEXT_DIM = 64  # the tiny Qwen2.5-VL's width (tiny_text_encoders.qwen_image_clip)


def from_config(config_cls, unet_config, dtype, seed):
    config = config_cls(unet_config)
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    return patcher(model)


def qwen_image_model(dtype=torch.float32, depth=3, seed=0, edit_2511=False):
    """Qwen-Image (and Edit): 2x2 patches of a 16-channel Wan latent [B, 16, 1, H, W]; hidden 64, 2 heads of 32.
    edit_2511: references get the timestep-0 modulation rows (default_ref_method index_timestep_zero)."""
    import comfy.supported_models

    unet_config = {
        "image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": depth,
        "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": QWEN_IMAGE_CONTEXT_DIM,
        "axes_dims_rope": (8, 12, 12),
    }
    if edit_2511:
        unet_config["default_ref_method"] = "index_timestep_zero"
    return from_config(comfy.supported_models.QwenImage, unet_config, dtype, seed)


def hidream_model(dtype=torch.float32, depth=3, single_depth=1, seed=0, experts=4):
    """HiDream-I1: 2x2 patches, image tokens first, hidden 64 (2 heads of 32), T5 captions of the tiny T5's
    width, Llama captions 4096 wide, 4 experts (2 active) in the image stream (experts=0: a plain SwiGLU)."""
    import comfy.supported_models

    unet_config = {
        "image_model": "hidream", "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": depth,
        "num_single_layers": single_depth, "attention_head_dim": 32, "num_attention_heads": 2,
        "caption_channels": [FLUX_CONTEXT_DIM, HIDREAM_LLAMA_DIM], "text_emb_dim": 2048, "num_routed_experts": experts,
        "num_activated_experts": 2, "axes_dims_rope": [16, 8, 8], "max_resolution": [32, 32],
        "llama_layers": list(range(depth + single_depth)),
    }
    return from_config(comfy.supported_models.HiDream, unet_config, dtype, seed)


HIDREAM_LLAMA_DIM = 4096  # ComfyUI fills a missing Llama encoder with zeros this wide


def hidream_clip(seed=4):
    """ComfyUI's HiDream text encoder with only a tiny T5-XXL loaded (CLIP-L/G and Llama absent, as a user
    may load it): `context` is the T5 states, the pooled vector and Llama states are ComfyUI's zeros."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    import comfy.text_encoders.hidream
    import comfy.text_encoders.t5

    class TinyHiDreamTE(comfy.text_encoders.hidream.HiDreamTEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            torch.nn.Module.__init__(self)
            self.clip_l = None
            self.clip_g = None
            self.llama = None
            self.t5xxl = comfy.sd1_clip.SDClipModel(
                device=device, dtype=dtype, textmodel_json_config=tiny_t5_config(FLUX_CONTEXT_DIM),
                special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5, enable_attention_masks=True,
                zero_out_masked=True, model_options={**model_options, "model_name": "t5xxl"})
            self.dtypes = {dtype}

    target = comfy.supported_models_base.ClipTarget(_hidream_tokenizer_class(), TinyHiDreamTE)
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32})
    randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


def _hidream_tokenizer_class():
    """ComfyUI's HiDreamTokenizer with a small stand-in for its Llama-3 tokenizer, whose tokenizer.json the
    ComfyUI snapshot the tests run on may lack (the Llama encoder is not loaded here, so its tokens are unused;
    the CLIP-L/G and T5 tokenizers are ComfyUI's own)."""
    import json
    import tempfile
    from pathlib import Path

    import comfy.sd1_clip
    import comfy.text_encoders.hidream
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = Path(tempfile.mkdtemp(prefix="tiny_llama_tokenizer_"))
    vocab = {"<unk>": 0, "<|begin_of_text|>": 1, "<pad>": 2}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))

    class TinyHiDreamTokenizer(comfy.text_encoders.hidream.HiDreamTokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data={}):
            import comfy.sdxl_clip
            import comfy.text_encoders.sd3_clip

            self.clip_l = comfy.sd1_clip.SDTokenizer(embedding_directory=embedding_directory, tokenizer_data=tokenizer_data)
            self.clip_g = comfy.sdxl_clip.SDXLClipGTokenizer(embedding_directory=embedding_directory,
                                                             tokenizer_data=tokenizer_data)
            self.t5xxl = comfy.text_encoders.sd3_clip.T5XXLTokenizer(
                embedding_directory=embedding_directory, min_length=128, max_length=128, tokenizer_data=tokenizer_data)
            self.llama = comfy.sd1_clip.SDTokenizer(
                str(folder), embedding_directory=embedding_directory, pad_with_end=False, embedding_size=4096,
                embedding_key="llama", tokenizer_class=PreTrainedTokenizerFast, has_start_token=False,
                has_end_token=False, pad_to_max_length=False, max_length=99999999, pad_token=2, min_length=128,
                tokenizer_data=tokenizer_data)

    return TinyHiDreamTokenizer


def mage_flow_model(dtype=torch.float32, depth=3, seed=0):
    """Mage-Flow: Qwen-Image's blocks over 1x1 patches of a 128-channel Flux.2 latent [B, 128, H, W]; hidden 64,
    2 heads of 32; text of the tiny Qwen3-VL's width (tiny_text_encoders.mage_flow_clip)."""
    import comfy.supported_models

    from concept_attention_tests.comfy.tiny.tiny_text_encoders import MAGE_FLOW_CONTEXT_DIM

    unet_config = {
        "image_model": "mage_flow", "in_channels": 128, "out_channels": 128, "num_layers": depth,
        "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": MAGE_FLOW_CONTEXT_DIM,
        "axes_dims_rope": (8, 12, 12),
    }
    return from_config(comfy.supported_models.MageFlow, unet_config, dtype, seed)
