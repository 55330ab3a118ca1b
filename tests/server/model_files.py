"""Small random-weight model files that ComfyUI's stock loader nodes accept (server tier).

Import as ``concept_attention_tests.server.model_files``. Nothing here is committed: the files
are written at test time (see tests/server/conftest.py, ``comfy_server_prepare``).

* :func:`write_tiny_sd3` - an SD3 MMDiT (depth 2, hidden 128, 2.4 M parameters, ~10 MB) that the
  stock ``UNETLoader`` loads from ``models/diffusion_models/``: ComfyUI reads the whole SD3 config
  from the tensor shapes (comfy/model_detection.py, the ``joint_blocks.0.context_block`` branch).
* :func:`write_tiny_flux2_klein` - a Flux.2 Klein 4B DiT (hidden 128 = one head of 128, 2 double +
  1 single block, 1.4 M parameters, ~6 MB) that the stock ``UNETLoader`` loads: ComfyUI reads a
  Flux.2 config from the tensor shapes too (the ``double_stream_modulation_img`` branch of
  comfy/model_detection.py), only with its head width (axes 4 x 32) fixed, so the hidden size is a
  multiple of 128. Its text input is as wide as the tiny Qwen3 of
  tests/comfy/tiny/tiny_text_encoders.py (``klein_clip("4b")``), served by the fixture node pack.
* :func:`write_tiny_cogvideox` - a CogVideoX-5B text-to-video DiT (2 heads of 64, 3 blocks, 3-D RoPE,
  0.95 M parameters, ~4 MB) that the stock ``UNETLoader`` loads: ComfyUI's detection fixes the head
  width at 64 and reads the rest from the shapes. Its text input is as wide as the tiny T5 of
  tests/comfy/tiny/tiny_cogvideox.py; text encoder and VAE come from the fixture node pack.
* :func:`write_tiny_minimax` - a MiniMax H3 DiT (hidden 64 = 2 heads of 32, 2 blocks, 0.3 M parameters) that the stock
  ``UNETLoader`` loads: ComfyUI reads the whole MiniMax H3 config from the shapes (the ``video_patch_proj`` branch of
  comfy/model_detection.py). Text encoder and both VAEs come from the fixture node pack (ComfyUI builds them at full
  size whatever the file holds).
* :func:`write_random_clip_l` - the state dict of ComfyUI's own CLIP-L text model
  (``comfy.sd1_clip.SDClipModel``, 123.6 M parameters, ~247 MB in fp16) with seeded random values.
  The stock ``CLIPLoader`` with type ``sd3`` turns it into an SD3 text encoder without CLIP-G or T5:
  conditioning [1, 77, 4096] with pooled_output [1, 2048], which the tiny SD3 reads.

All run in the pytest process, which has ComfyUI on sys.path in CPU mode (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

SD3_DEPTH = 2  # hidden size = 64 * depth
SD3_CONTEXT_DIM = 4096  # SD3 pads CLIP-L|G (and T5) states to 4096
SD3_POOLED_DIM = 2048  # CLIP-L pooled (768) + CLIP-G pooled (1280)
SD3_POS_EMBED_MAX = 64

SD3_FILE = "tiny_sd3_concept_attention.safetensors"
FLUX2_KLEIN_FILE = "tiny_flux2_klein4b_concept_attention.safetensors"
FLUX2_HIDDEN = 128  # ComfyUI's Flux.2 detection fixes the head width at 128 (axes_dim 4 x 32)
CLIP_L_FILE = "random_clip_l_concept_attention.safetensors"
COGVIDEOX_FILE = "tiny_cogvideox_5b_concept_attention.safetensors"
COGVIDEOX_HEADS = 2  # ComfyUI's CogVideoX detection fixes the head width at 64
MINIMAX_FILE = "tiny_minimax_h3_concept_attention.safetensors"


def _seeded_values(name: str, shape, gen: torch.Generator, std: float) -> torch.Tensor:
    values = torch.randn(shape, generator=gen, dtype=torch.float32) * std
    if name.endswith(("norm.weight", "norm.scale", "norm1.weight", "norm2.weight")) or ".ln_" in name \
            or "layer_norm" in name:
        values = 1.0 + values
    return values


def _random_diffusion_model(model_class, unet_config: dict, seed: int, std: float) -> dict[str, torch.Tensor]:
    """ComfyUI's diffusion model for this unet_config, its float tensors (buffers included) seeded random."""
    config = model_class(unet_config)
    config.set_inference_dtype(torch.float32, None)
    network = config.get_model({}).diffusion_model
    gen = torch.Generator().manual_seed(seed)
    return {name: _seeded_values(name, t.shape, gen, std).contiguous()
            for name, t in sorted(network.state_dict().items()) if t.is_floating_point()}


def _save(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def tiny_sd3_state_dict(seed: int = 0, depth: int = SD3_DEPTH, std: float = 0.08) -> dict[str, torch.Tensor]:
    """The diffusion_model state dict of a tiny SD3 (keys without prefix, as UNETLoader files have)."""
    import comfy.supported_models

    hidden = 64 * depth
    unet_config = {
        "in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": depth,
        "num_patches": SD3_POS_EMBED_MAX * SD3_POS_EMBED_MAX, "pos_embed_max_size": SD3_POS_EMBED_MAX,
        "pos_embed_scaling_factor": None, "pos_embed_offset": None, "adm_in_channels": SD3_POOLED_DIM,
        "context_embedder_config": {"target": "torch.nn.Linear",
                                    "params": {"in_features": SD3_CONTEXT_DIM, "out_features": hidden}},
        "qk_norm": "rms", "x_block_self_attn_layers": [],
    }
    return _random_diffusion_model(comfy.supported_models.SD3, unet_config, seed, std)


def write_tiny_sd3(path: Path, seed: int = 0) -> Path:
    return _save(path, tiny_sd3_state_dict(seed))


def tiny_flux2_klein_state_dict(seed: int = 0, depth: int = 2, single_depth: int = 1,
                                 std: float = 0.08) -> dict[str, torch.Tensor]:
    """The diffusion_model state dict of a tiny Flux.2 Klein 4B (no guidance embedder), as UNETLoader
    files have it: every field ComfyUI's detection reads from the shapes, the rest as it fixes them."""
    import comfy.supported_models

    from concept_attention_tests.comfy.tiny.tiny_models import KLEIN_4B_CONTEXT_DIM

    unet_config = {
        "image_model": "flux2", "in_channels": 128, "out_channels": 128, "vec_in_dim": None,
        "context_in_dim": KLEIN_4B_CONTEXT_DIM, "hidden_size": FLUX2_HIDDEN, "mlp_ratio": 3.0,
        "num_heads": FLUX2_HIDDEN // 128, "depth": depth, "depth_single_blocks": single_depth,
        "axes_dim": [32, 32, 32, 32], "theta": 2000, "patch_size": 1, "qkv_bias": False, "guidance_embed": False,
        "txt_ids_dims": [3], "global_modulation": True, "mlp_silu_act": True, "ops_bias": False,
        "default_ref_method": "index", "ref_index_scale": 10.0,
    }
    return _random_diffusion_model(comfy.supported_models.Flux2, unet_config, seed, std)


def write_tiny_flux2_klein(path: Path, seed: int = 0) -> Path:
    return _save(path, tiny_flux2_klein_state_dict(seed))


def tiny_cogvideox_state_dict(seed: int = 0, depth: int = 3, std: float = 0.08) -> dict[str, torch.Tensor]:
    """The diffusion_model state dict of a tiny CogVideoX-5B (text to video, 3-D RoPE: no position table), as
    UNETLoader files have it: ComfyUI's detection reads heads (hidden / 64), time embedding, block count, input
    channels, patch size and text width from the shapes; the text is as wide as the tiny T5 of
    tests/comfy/tiny/tiny_cogvideox.py (``cogvideox_clip()``), served by the fixture node pack."""
    import comfy.supported_models

    from concept_attention_tests.comfy.tiny.tiny_cogvideox import CONTEXT_DIM

    unet_config = {
        "image_model": "cogvideox", "num_attention_heads": COGVIDEOX_HEADS, "attention_head_dim": 64,
        "time_embed_dim": 64, "num_layers": depth, "in_channels": 16, "patch_size": 2,
        "text_embed_dim": CONTEXT_DIM, "use_learned_positional_embeddings": False,
        "use_rotary_positional_embeddings": True,
    }
    return _random_diffusion_model(comfy.supported_models.CogVideoX_T2V, unet_config, seed, std)


def write_tiny_cogvideox(path: Path, seed: int = 0) -> Path:
    return _save(path, tiny_cogvideox_state_dict(seed))


def tiny_minimax_state_dict(seed: int = 0, depth: int = 2, std: float = 0.08) -> dict[str, torch.Tensor]:
    """The diffusion_model state dict of a tiny MiniMax H3 (tests/comfy/tiny/tiny_minimax.py's config), as UNETLoader
    files have it, its RoPE inverse frequencies RoPE's usual 1 / 10000^(i/n) (a buffer the checkpoint holds)."""
    import comfy.supported_models

    from concept_attention_tests.comfy.tiny import tiny_minimax

    state = _random_diffusion_model(comfy.supported_models.MiniMaxH3, tiny_minimax.unet_config(depth), seed, std)
    n = tiny_minimax.ROPE_FREQS
    state["rope.inv_freq"] = 1.0 / 10000.0 ** (torch.arange(n, dtype=torch.float32) / n)
    return state


def write_tiny_minimax(path: Path, seed: int = 0) -> Path:
    return _save(path, tiny_minimax_state_dict(seed))


def random_clip_l_state_dict(seed: int = 1, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """ComfyUI's CLIP-L text model state dict (HF key names, as CLIPLoader files have), random."""
    import comfy.sd1_clip

    # ComfyUI's ops skip weight init, so building the module only allocates.
    model = comfy.sd1_clip.SDClipModel(device="cpu", dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in sorted(model.state_dict().items()):
        if not name.startswith("transformer."):
            continue
        key = name[len("transformer."):]
        if not t.is_floating_point():
            out[key] = t.clone()
            continue
        std = 0.02 if "embedding" in key else 0.04
        out[key] = _seeded_values(key, t.shape, gen, std).to(dtype).contiguous()
    del model
    return out


def write_random_clip_l(path: Path, seed: int = 1) -> Path:
    path = Path(path)
    tmp = _save(path.with_name(path.name + ".partial"), random_clip_l_state_dict(seed))
    os.replace(tmp, path)
    return path


def link_or_copy(src: Path, dest: Path) -> Path:
    """Hard-link src to dest (same file system), else copy it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return dest
