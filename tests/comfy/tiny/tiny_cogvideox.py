"""Tiny random-weight CogVideoX models and their T5-XXL text encoder, as ComfyUI's loaders build them.

Models come from comfy.supported_models.CogVideoX_T2V / CogVideoX_I2V / CogVideoX_Inpaint + model_base.CogVideoX
(v-prediction DDPM with a zero-terminal-SNR schedule) in a real ModelPatcher, with the unet_config keys
ComfyUI's model detection sets, only smaller: 3 heads of 32 (hidden 96, divisible by 3 as the 2B's sincos
position table needs), time embedding 64, 2x2 patches, text 64 wide (the tiny T5's width).

Variants (what the real checkpoints differ in):
  2b      text-to-video, sincos position table computed for the latent's size (CogVideoX-2B)
  5b      text-to-video, 3-D RoPE on the video tokens (CogVideoX-5B)
  5b-i2v  image-to-video, 32 input channels, a learned position table (CogVideoX-5B-I2V as ComfyUI detects it)
  1.5     text-to-video, patch_size_t = 2 (pairs of latent frames), RoPE in "slice" mode (CogVideoX 1.5)
  1.5-i2v image-to-video 1.5, with the `ofs` embedding
  fun-inpaint  CogVideoX-Fun V1.5 inpainting: 48 input channels, patch_size_t = 2

The text encoder is ComfyUI's CLIPLoader `cogvideox` pair (CogVideoXTokenizer, padding to 226 tokens, and
CogVideoXT5XXL), its inner T5 shrunk through ComfyUI's "t5xxl_class" model option.
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.tiny.tiny_models import patcher, randomize, tiny_t5_config

CONTEXT_DIM = 64  # the tiny T5's width
HEADS, HEAD_DIM = 3, 32
VARIANTS = ("2b", "5b", "5b-i2v", "1.5", "1.5-i2v", "fun-inpaint")
TINY_VAE_WIDTHS = {"block_out_channels": (8, 8, 8, 8), "layers_per_block": 1, "groups": 4}


def unet_config(variant: str, depth: int = 3) -> dict:
    """The unet_config ComfyUI's detection gives a checkpoint of this variant, at tiny sizes."""
    config = {
        "image_model": "cogvideox", "num_attention_heads": HEADS, "attention_head_dim": HEAD_DIM,
        "time_embed_dim": 64, "num_layers": depth, "in_channels": 16, "patch_size": 2,
        "text_embed_dim": CONTEXT_DIM, "use_learned_positional_embeddings": False,
        "use_rotary_positional_embeddings": True,
    }
    if variant == "2b":
        config["use_rotary_positional_embeddings"] = False
    elif variant == "5b-i2v":
        config.update(in_channels=32, use_learned_positional_embeddings=True, use_rotary_positional_embeddings=False)
    elif variant in ("1.5", "1.5-i2v", "fun-inpaint"):
        config["patch_size_t"] = 2
        if variant == "1.5-i2v":
            config.update(in_channels=32, ofs_embed_dim=64)
        elif variant == "fun-inpaint":
            config["in_channels"] = 48
    elif variant != "5b":
        raise ValueError(f"unknown CogVideoX variant {variant!r}; one of {VARIANTS}")
    return config


def _randomize_cogvideox(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    randomize(model, seed)
    with torch.no_grad():
        # LayerNorm scales near 1 (the shared helper only recognises names ending in "norm.weight").
        gen = torch.Generator().manual_seed(seed + 1000)
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm) and module.weight is not None:
                values = 1.0 + 0.08 * torch.randn(module.weight.shape, generator=gen)
                module.weight.copy_(values.to(module.weight.dtype))
    return model


def cogvideox_model(variant: str = "5b", dtype=torch.float32, depth: int = 3, seed: int = 0, heads: int = HEADS):
    """A real ModelPatcher over ComfyUI's CogVideoX of this variant, random weights. heads: 2 makes the width 64,
    which every quantized format's groups divide (the 2B's sincos table needs a width divisible by 3)."""
    import comfy.supported_models

    config_cls = {
        "5b-i2v": comfy.supported_models.CogVideoX_I2V, "1.5-i2v": comfy.supported_models.CogVideoX_I2V,
        "fun-inpaint": comfy.supported_models.CogVideoX_Inpaint,
    }.get(variant, comfy.supported_models.CogVideoX_T2V)
    config = config_cls({**unet_config(variant, depth), "num_attention_heads": heads})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    _randomize_cogvideox(model.diffusion_model, seed)
    return patcher(model)


def cogvideox_clip(seed: int = 21):
    """ComfyUI's CogVideoX text encoder (CLIPLoader type `cogvideox`) with a tiny T5-XXL, as a real comfy.sd.CLIP."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    import comfy.text_encoders.cogvideo
    import comfy.text_encoders.t5

    class TinyT5XXLModel(comfy.sd1_clip.SDClipModel):
        """sd3_clip.T5XXLModel (last layer, no attention mask) over a tiny T5 config."""

        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
            super().__init__(device=device, dtype=dtype, textmodel_json_config=tiny_t5_config(CONTEXT_DIM),
                             special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                             enable_attention_masks=False, return_attention_masks=False,
                             model_options={**model_options, "model_name": "t5xxl"})

    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.cogvideo.CogVideoXTokenizer,
                                                    comfy.text_encoders.cogvideo.CogVideoXT5XXL)
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32, "t5xxl_class": TinyT5XXLModel})
    randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


def cogvideox_vae_decoder(seed: int = 22):
    """ComfyUI's CogVideoX VAE (comfy.ldm.cogvideo.vae.AutoencoderKLCogVideoX) with tiny widths: what a clip of
    T latent frames decodes to, frame count included."""
    from comfy.ldm.cogvideo.vae import AutoencoderKLCogVideoX

    vae = AutoencoderKLCogVideoX(**TINY_VAE_WIDTHS)
    return randomize(vae, seed, std=0.05).eval()


def cogvideox_vae(seed: int = 22):
    """The tiny CogVideoX VAE as the stock VAELoader serves a CogVideoX VAE file: a comfy.sd.VAE that ComfyUI's own
    detection set up (4x time, 8x space, 16 channels, 3-D latents), only the network built at the tiny widths of
    cogvideox_vae_decoder (ComfyUI builds this VAE at full width whatever the file holds)."""
    import functools
    from unittest import mock

    import comfy.ldm.cogvideo.vae
    import comfy.sd

    tiny = functools.partial(comfy.ldm.cogvideo.vae.AutoencoderKLCogVideoX, **TINY_VAE_WIDTHS)
    state_dict = cogvideox_vae_decoder(seed).state_dict()
    with mock.patch.object(comfy.ldm.cogvideo.vae, "AutoencoderKLCogVideoX", tiny):
        return comfy.sd.VAE(sd=state_dict, dtype=torch.float32)
