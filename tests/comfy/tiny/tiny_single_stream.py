"""Tiny random-weight single-stream models from ComfyUI's own classes, wrapped in real ModelPatchers.

Z-Image (latent and pixel space), Lumina 2 and NewBie (comfy NextDiT) and Krea 2 (comfy krea2 SingleStreamDiT) come from
comfy.supported_models + comfy.model_base as ComfyUI's loaders build them, with small widths; their
text widths match the tiny encoders of tiny_text_encoders.
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.tiny.tiny_models import from_config
from concept_attention_tests.comfy.tiny.tiny_text_encoders import (
    KREA2_TEXT_DIM,
    KREA2_TEXT_LAYERS,
    LUMINA2_CONTEXT_DIM,
    ZIMAGE_CONTEXT_DIM,
)

NEWBIE_POOLED_DIM = 16  # NewBie's pooled Jina CLIP width (1024 in the release)


def z_image_model(dtype=torch.float32, depth=3, seed=0, omni=False):
    """Z-Image (Turbo/Base layout): 256 wide (Z-Image's adaLN reads a 256-wide timestep vector, so narrower is not
    possible), 8 heads of 32, captions and pictures padded with pad tokens to a multiple of 32, one noise and
    one context refiner. omni: the Omni variant's SigLIP embedder and refiner (reference pictures at timestep 0)."""
    import comfy.supported_models

    unet_config = {
        "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 256, "cap_feat_dim": ZIMAGE_CONTEXT_DIM,
        "n_layers": depth, "n_refiner_layers": 1, "qk_norm": True, "n_heads": 8, "n_kv_heads": 8,
        "axes_dims": [8, 12, 12], "axes_lens": [1536, 512, 512], "rope_theta": 256.0, "ffn_dim_multiplier": 8.0 / 3.0,
        "z_image_modulation": True, "time_scale": 1000.0, "pad_tokens_multiple": 32, "allow_fp16": True,
    }
    if omni:
        unet_config["siglip_feat_dim"] = 16
    return from_config(comfy.supported_models.ZImage, unet_config, dtype, seed)


def lumina2_model(dtype=torch.float32, depth=3, seed=0):
    """Lumina 2 (and NetaYume): 64 wide, 2 query heads of 32 sharing one key/value head (GQA, as Lumina 2's 24
    heads share 8), no pad tokens."""
    import comfy.supported_models

    unet_config = {
        "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 64, "cap_feat_dim": LUMINA2_CONTEXT_DIM,
        "n_layers": depth, "n_refiner_layers": 1, "qk_norm": True, "n_heads": 2, "n_kv_heads": 1,
        "axes_dims": [8, 12, 12], "axes_lens": [300, 512, 512], "rope_theta": 10000.0, "ffn_dim_multiplier": 4.0,
    }
    return from_config(comfy.supported_models.Lumina2, unet_config, dtype, seed)


def newbie_model(dtype=torch.float32, depth=3, seed=0):
    """NewBie: Lumina 2's NextDiT with a pooled Jina CLIP vector projected into the adaLN input (clip_text_dim,
    16 wide here), so every block's modulation depends on the pooled text as well as the timestep."""
    import comfy.supported_models

    unet_config = {
        "image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 64, "cap_feat_dim": LUMINA2_CONTEXT_DIM,
        "n_layers": depth, "n_refiner_layers": 1, "qk_norm": True, "n_heads": 2, "n_kv_heads": 1,
        "axes_dims": [8, 12, 12], "axes_lens": [300, 512, 512], "rope_theta": 10000.0, "ffn_dim_multiplier": 4.0,
        "clip_text_dim": NEWBIE_POOLED_DIM,
    }
    model = from_config(comfy.supported_models.Lumina2, unet_config, dtype, seed)
    # The pooled vector's RMSNorm (named "...proj.0", so randomize left it near 0): weights near 1, as trained.
    norm = model.model.diffusion_model.clip_text_pooled_proj[0]
    with torch.no_grad():
        norm.weight.add_(1.0)
    return model


def z_image_pixel_model(dtype=torch.float32, depth=3, seed=0):
    """Z-Image in pixel space (NextDiTPixelSpace): the Z-Image backbone on 4x4 RGB patches, its output through the
    per-patch MLP decoder (dec_net) instead of a final layer; no VAE."""
    import comfy.supported_models

    unet_config = {
        "image_model": "zimage_pixel", "patch_size": 4, "in_channels": 3, "dim": 256,
        "cap_feat_dim": ZIMAGE_CONTEXT_DIM, "n_layers": depth, "n_refiner_layers": 1, "qk_norm": True, "n_heads": 8,
        "n_kv_heads": 8, "axes_dims": [8, 12, 12], "axes_lens": [1536, 512, 512], "rope_theta": 256.0,
        "ffn_dim_multiplier": 8.0 / 3.0, "z_image_modulation": True, "time_scale": 1000.0,
        "pad_tokens_multiple": 32, "decoder_in_channels": 48, "decoder_hidden_size": 32,
        "decoder_num_res_blocks": 1, "decoder_max_freqs": 4,
    }
    return from_config(comfy.supported_models.ZImagePixelSpace, unet_config, dtype, seed)


def krea2_model(dtype=torch.float32, depth=3, seed=0):
    """Krea 2: 64 wide, 2 query heads of 32 sharing one key/value head, text fusion over the tiny encoder's 12 tapped
    layers (16 wide, 2 heads)."""
    import comfy.supported_models

    unet_config = {
        "image_model": "krea2", "features": 64, "channels": 16, "patch": 2, "layers": depth, "heads": 2,
        "kvheads": 1, "txtlayers": KREA2_TEXT_LAYERS, "txtdim": KREA2_TEXT_DIM, "txtheads": 2, "txtkvheads": 2,
    }
    model = from_config(comfy.supported_models.Krea2, unet_config, dtype, seed)
    # Krea 2's RMSNorms weigh by 1 + scale (scale stored zero-centred): small scales, not randomize's 1 + noise.
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in sorted(model.model.diffusion_model.named_parameters()):
            if name.endswith("norm.scale"):
                p.copy_((torch.randn(p.shape, generator=gen) * 0.08).to(p.dtype))
    return model
