"""A tiny random-weight JoyImage (JoyAI-Image-Edit) model and text encoder from ComfyUI's own classes.

The model comes from comfy.supported_models.JoyImage + comfy.model_base.JoyImage as ComfyUI's loader builds it
(the class fixes the RoPE split [16, 56, 56], so each head is 128 wide: 2 heads, 256 wide). The text encoder is
ComfyUI's JoyImageTokenizer (the real Qwen tokenizer and JoyImage's chat template) with its JoyImageTEModel (the last
Qwen3-VL layer before the final norm, the 34 system-prompt tokens cut off) over a 2-layer Qwen3-VL.
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.tiny.tiny_models import from_config, randomize
from concept_attention_tests.comfy.tiny.tiny_text_encoders import _clip, _llm_config, _tiny_qwen3vl_vision

JOYIMAGE_CONTEXT_DIM = 32  # the tiny Qwen3-VL's width


def joyimage_model(dtype=torch.float32, depth=3, seed=0, std=None):
    """JoyImage: 1x2x2 patches of a 16-channel Wan latent [B, 16, 1, H, W]; hidden 256, 2 heads of 128; text of the
    tiny Qwen3-VL's width (joyimage_clip). std: the random weights' spread where not the other tiny models' (256 wide,
    those weights make scores sharp enough that float32 alone moves the maps past the reference tolerance)."""
    import comfy.supported_models

    unet_config = {
        "image_model": "joyimage", "in_channels": 16, "hidden_size": 256, "patch_size": [1, 2, 2],
        "num_layers": depth, "num_attention_heads": 2, "text_dim": JOYIMAGE_CONTEXT_DIM,
    }
    model = from_config(comfy.supported_models.JoyImage, unet_config, dtype, seed)
    if std is not None:
        randomize(model.model.diffusion_model, seed, std=std)
    return model


def joyimage_clip(seed=21):
    """JoyImage's text encoder as comfy.sd.CLIP: JoyImageTokenizer + JoyImageTEModel over a tiny Qwen3-VL."""
    import comfy.text_encoders.joyimage as joyimage

    options = {"qwen3vl_8b_class": _tiny_qwen3vl_vision(joyimage._JoyImageClipModel),
               "qwen3vl_8b_model_config": _llm_config(JOYIMAGE_CONTEXT_DIM, 2)}
    return _clip(joyimage.JoyImageTokenizer, joyimage.te(), options, seed)
