"""Tiny random-weight MiniMax H3 models, their Qwen3-VL text encoder and their video and audio VAEs, as ComfyUI's loaders
build them.

The model comes from comfy.supported_models.MiniMaxH3 + model_base.MiniMaxH3 (joint video + audio flow model,
sigma shift 12 for video and 3 for audio) in a real ModelPatcher, with the unet_config keys ComfyUI's model
detection sets, only smaller: hidden 64, 2 heads of 32 (RoPE on the first 3 x 2 x 4 = 24 of each head's 32
channels, as the real model rotates 96 of 128), time embedding 32, 2-block token refiner, 1x2x2 video patches,
24 video and 32 audio latent channels as the real latents have. The rope's inverse frequencies (a buffer the
checkpoint holds) are set as RoPE's usual 1 / 10000^(i/n).

The text encoder is ComfyUI's MiniMax H3 pair (MiniMaxH3Tokenizer: raw prompt text, no chat template; and
MiniMaxH3TEModel over Qwen3-VL, the last layer's states without a final norm), its Qwen3-VL shrunk to 2 layers
of width 32 and its vision tower to one small block through ComfyUI's "qwen3vl_32b_*" model options.
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.tiny.tiny_models import patcher, randomize
from concept_attention_tests.comfy.tiny.tiny_text_encoders import _clip, _llm_config, _tiny_qwen3vl_vision

CONTEXT_DIM = 32  # the tiny Qwen3-VL's width
HIDDEN, HEADS, HEAD_DIM = 64, 2, 32
ROPE_FREQS = 4  # per axis: 3 axes x 4 pairs x 2 = 24 rotated channels of 32
VIDEO_CHANNELS, AUDIO_CHANNELS = 24, 32


def unet_config(depth: int = 3) -> dict:
    return {
        "image_model": "minimax_h3", "num_layers": depth, "token_refiner_num_layers": 2, "hidden_size": HIDDEN,
        "latents_dim": VIDEO_CHANNELS, "audio_latents_dim": AUDIO_CHANNELS, "attention_head_dim": HEAD_DIM,
        "num_attention_heads": HEADS, "ffn_hidden_size": 96, "text_dim": CONTEXT_DIM, "timestep_input_dim": 32,
        "time_embed_hidden_size": 48, "time_embed_dim": 32, "rope_inv_freq_len": ROPE_FREQS,
    }


def minimax_model(dtype=torch.float32, depth: int = 3, seed: int = 0):
    """A real ModelPatcher over ComfyUI's MiniMax H3, random weights."""
    import comfy.supported_models

    config = comfy.supported_models.MiniMaxH3(unet_config(depth))
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    dm = model.diffusion_model
    randomize(dm, seed)
    with torch.no_grad():
        dm.rope.inv_freq.copy_(1.0 / 10000.0 ** (torch.arange(ROPE_FREQS, dtype=torch.float32) / ROPE_FREQS))
    return patcher(model)


def minimax_clip(seed: int = 23):
    """ComfyUI's MiniMax H3 text encoder (MiniMaxH3Tokenizer + MiniMaxH3TEModel) with a tiny Qwen3-VL."""
    import comfy.text_encoders.minimax as minimax

    options = {"qwen3vl_32b_class": _tiny_qwen3vl_vision(minimax.MiniMaxH3ClipModel),
               "qwen3vl_32b_model_config": _llm_config(CONTEXT_DIM, 2)}
    return _clip(minimax.MiniMaxH3Tokenizer, minimax.te(), options, seed)


def empty_av_latent(frames: int = 3, height: int = 6, width: int = 8, seed: int | None = None):
    """A MiniMax H3 AV latent as EmptyMiniMaxH3LatentAV makes it: a NestedTensor (video [1, 24, T, h, w], audio
    [1, 32, 2, audio frames]); random values where a seed is given (an encoded clip)."""
    import comfy.latent_formats
    import comfy.nested_tensor

    nested = comfy.latent_formats.MiniMaxH3AV().fix_empty_latent(torch.zeros(1, 32, frames, height, width))
    if seed is None:
        return nested
    g = torch.Generator().manual_seed(seed)
    return comfy.nested_tensor.NestedTensor([torch.randn(t.shape, generator=g) for t in nested.unbind()])


# The VAEs: ComfyUI builds both MiniMax H3 VAEs at full size whatever a file holds (comfy.sd.VAE's detection names no
# widths), so the tiny ones are ComfyUI's classes at small widths, served as the stock VAELoader serves them.
TINY_VIDEO_VAE = {"ch": 32, "ch_mult": (1, 1, 1, 1, 1, 1), "num_res_blocks": 1}  # 6 levels: 16x space, 4x time
TINY_VIDEO_DECODER = {"num_layers": 1, "heads": 2, "dim_head": 16}
TINY_AUDIO_VAE = {"encoder_dim": 4, "latent_dim": 32, "decoder_dim": 128}  # 800 samples per latent frame, 32 kHz


def _seeded_state(module, seed: int, std: float, keep=()) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {name: (torch.randn(t.shape, generator=g) * std if t.is_floating_point() and name not in keep else t)
            for name, t in module.state_dict().items()}


def minimax_video_vae(seed: int = 31):
    """ComfyUI's MiniMax H3 video VAE (comfy.ldm.minimax.vae.MiniMaxH3VideoVAE: 24 channels, 16x space, latent frame k
    decodes to 1, 4, 4, 4, 4 pictures) at tiny widths, as a comfy.sd.VAE that ComfyUI's own detection set up: 2 latent
    frames decode to 5 pictures, 7 to 22."""
    import functools
    from unittest import mock

    import comfy.ldm.minimax.vae as video_vae
    import comfy.sd

    decoder = functools.partial(video_vae.ViT3DDecoder, **TINY_VIDEO_DECODER)
    tiny = functools.partial(video_vae.MiniMaxH3VideoVAE, **TINY_VIDEO_VAE)
    with mock.patch.object(video_vae, "ViT3DDecoder", decoder):
        state = _seeded_state(tiny(), seed, 0.05, keep=("latents_mean", "latents_std"))
        with mock.patch.object(video_vae, "MiniMaxH3VideoVAE", tiny):
            return comfy.sd.VAE(sd=state, dtype=torch.float32)


def minimax_audio_vae(seed: int = 32):
    """ComfyUI's MiniMax H3 audio VAE (comfy.ldm.minimax.audio_vae.MiniMaxH3AudioVAE: [B, 32, 2, T] latents, 40 a
    second, stereo 32 kHz) at tiny widths, as a comfy.sd.VAE that ComfyUI's own detection set up."""
    import functools
    from unittest import mock

    import comfy.ldm.minimax.audio_vae as audio_vae
    import comfy.sd

    tiny = functools.partial(audio_vae.MiniMaxH3AudioVAE, **TINY_AUDIO_VAE)
    state = _seeded_state(tiny(), seed, 0.05)
    state["latents_mean"], state["latents_std"] = torch.zeros(AUDIO_CHANNELS), torch.ones(AUDIO_CHANNELS)
    with mock.patch.object(audio_vae, "MiniMaxH3AudioVAE", tiny):
        return comfy.sd.VAE(sd=state, dtype=torch.float32)
