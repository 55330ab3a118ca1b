"""Tiny random-weight HunyuanVideo 1 (T2V, I2V, SkyReels I2V), HunyuanVideo 1.5 and HunyuanImage 2.1, built from
comfy.supported_models exactly as ComfyUI's loaders build them (only the widths shrink), in real ModelPatchers.

Hidden 64 with 2 heads of 32 (RoPE axes 8+12+12, or 16+16 for HunyuanImage's 2-D positions); text widths are the
tiny text encoders' (tiny_text_encoders.py), except byT5's, which ComfyUI fixes at 1472.
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.tiny.tiny_models import patcher, randomize
from concept_attention_tests.comfy.tiny.tiny_text_encoders import (
    HUNYUAN_QWEN_CONTEXT_DIM,
    HUNYUAN_VIDEO_CONTEXT_DIM,
    HUNYUAN_VIDEO_POOLED_DIM,
)

VISION_DIM = 16  # HunyuanVideo 1.5's vision_in width (1152 for the real SigLIP features)

_COMMON = {
    "image_model": "hunyuan_video", "hidden_size": 64, "num_heads": 2, "mlp_ratio": 4.0, "theta": 256,
    "qkv_bias": True, "meanflow": False, "meanflow_sum": False,
}


def _build(config_cls, unet_config, dtype, seed):
    config = config_cls({**_COMMON, **unet_config})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    return patcher(model)


def hunyuan_video_model(dtype=torch.float32, depth=3, single_depth=1, seed=0, variant="t2v"):
    """HunyuanVideo 1: 1x2x2 patches of a 16-channel latent [B, 16, T, H, W]; Llava-Llama-3 text, CLIP-L pooled
    vector, guidance embedding. variant: "t2v", "i2v" (33 input channels: latent, start-frame latent, mask) or
    "skyreels" (SkyReels I2V: 32 input channels, latent and start-frame latent)."""
    import comfy.supported_models as sm

    config_cls, channels = {"t2v": (sm.HunyuanVideo, 16), "i2v": (sm.HunyuanVideoI2V, 33),
                            "skyreels": (sm.HunyuanVideoSkyreelsI2V, 32)}[variant]
    unet_config = {
        "in_channels": channels, "out_channels": 16, "patch_size": [1, 2, 2], "vec_in_dim": HUNYUAN_VIDEO_POOLED_DIM,
        "context_in_dim": HUNYUAN_VIDEO_CONTEXT_DIM, "depth": depth, "depth_single_blocks": single_depth,
        "axes_dim": [8, 12, 12], "guidance_embed": True, "byt5": False, "use_cond_type_embedding": False,
        "vision_in_dim": None,
    }
    return _build(config_cls, unet_config, dtype, seed)


def hunyuan_video15_model(dtype=torch.float32, depth=3, seed=0):
    """HunyuanVideo 1.5: dual blocks only, 1x1x1 patches of a 32-channel latent, 65 input channels (latent,
    start-frame latent, mask); Qwen2.5-VL text with cond_type_embedding, byT5 glyph and vision tokens; no pooled
    vector, no guidance embedding."""
    import comfy.supported_models as sm

    unet_config = {
        "in_channels": 65, "out_channels": 32, "patch_size": [1, 1, 1], "vec_in_dim": None,
        "context_in_dim": HUNYUAN_QWEN_CONTEXT_DIM, "depth": depth, "depth_single_blocks": 0,
        "axes_dim": [8, 12, 12], "guidance_embed": False, "byt5": True, "use_cond_type_embedding": True,
        "vision_in_dim": VISION_DIM,
    }
    return _build(sm.HunyuanVideo15, unet_config, dtype, seed)


def hunyuan_image21_model(dtype=torch.float32, depth=3, single_depth=1, seed=0):
    """HunyuanImage 2.1: 1x1 patches of a 64-channel picture latent [B, 64, H, W] (2-D positions); Qwen2.5-VL text
    with byT5 glyph tokens; guidance embedding, no pooled vector."""
    import comfy.supported_models as sm

    unet_config = {
        "in_channels": 64, "out_channels": 64, "patch_size": [1, 1], "vec_in_dim": None,
        "context_in_dim": HUNYUAN_QWEN_CONTEXT_DIM, "depth": depth, "depth_single_blocks": single_depth,
        "axes_dim": [16, 16], "guidance_embed": True, "byt5": True, "use_cond_type_embedding": False,
        "vision_in_dim": None,
    }
    return _build(sm.HunyuanImage21, unet_config, dtype, seed)
