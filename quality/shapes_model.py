"""The shapes model: ComfyUI's Chroma Radiance at a small config, trained on the synthetic world.

Both halves are ComfyUI's own classes: the diffusion model is `comfy.supported_models.ChromaRadiance` (pixel
space, so no VAE: ComfyUI's `pixel_space` VAE reads its pictures), the text encoder Chroma's own
(`comfy.text_encoders.pixart_t5`: ComfyUI's T5 class and T5 tokenizer) at a tiny width. The text encoder is not
trained: its weights are seeded random values (`TEXT_ENCODER_SEED`), fixed before the diffusion model learns to
read them. One safetensors file holds the diffusion model (float16) and, in its metadata, both configs and the text
encoder's seed, so `load_shapes_model` rebuilds exactly what was trained.

ComfyUI's stock loaders cannot read this file: their Chroma Radiance detection fixes the width (3072), the head
size (128) and the modulation approximator (5120 wide), and their Chroma text encoder must be T5-XXL sized.
"""

from __future__ import annotations

import dataclasses
import json
import os

import torch

# The small config (ChromaRadianceParams fields). Head width 32 = sum(axes_dim).
DEFAULT_DIT_CONFIG = {
    "image_model": "chroma_radiance", "in_channels": 3, "out_channels": 3, "context_in_dim": 64,
    "hidden_size": 128, "mlp_ratio": 4.0, "num_heads": 4, "depth": 4, "depth_single_blocks": 2,
    "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 4, "qkv_bias": True,
    "in_dim": 64, "out_dim": 128, "hidden_dim": 64, "n_layers": 2, "txt_ids_dims": [], "vec_in_dim": None,
    "nerf_hidden_size": 32, "nerf_mlp_ratio": 2, "nerf_depth": 2, "nerf_max_freqs": 4, "nerf_tile_size": 0,
    "nerf_final_head_type": "conv", "use_x0": False, "use_sequential_txt_ids": False,
}

# ComfyUI's T5 config keys that the tiny encoder overrides (the rest is t5_config_xxl.json).
DEFAULT_TEXT_CONFIG = {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 2}
TEXT_ENCODER_SEED = 20261208

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "shapes_radiance.safetensors")


def dit_config(**overrides) -> dict:
    config = {**DEFAULT_DIT_CONFIG, **overrides}
    config["out_dim"] = config["hidden_size"]  # the approximator's vectors modulate the blocks' width
    return config


def build_diffusion_model(config: dict, dtype=torch.float32, device=None):
    """A ComfyUI ModelPatcher around `comfy.model_base.ChromaRadiance` at `config` (weights not initialised)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models
    from comfy.ldm.chroma_radiance.model import ChromaRadianceParams

    fields = {f.name for f in dataclasses.fields(ChromaRadianceParams)}
    unet_config = {k: v for k, v in config.items() if k in fields or k == "image_model"}
    unet_config["nerf_embedder_dtype"] = torch.float32
    model_config = comfy.supported_models.ChromaRadiance(unet_config)
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({})
    load_device = device or comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=torch.device("cpu"))


def build_text_model(text_config: dict | None = None, state_dict: dict | None = None):
    """Chroma's own text-encoder model (ComfyUI's PixArt T5) at a tiny width, without its tokenizer; its weights
    are `state_dict`, else the fixed seeded ones."""
    import comfy.text_encoders.pixart_t5

    text_config = {**DEFAULT_TEXT_CONFIG, **(text_config or {})}
    model = comfy.text_encoders.pixart_t5.pixart_te()(device="cpu", dtype=torch.float32,
                                                      model_options={"t5xxl_model_config": text_config})
    model.load_state_dict(state_dict if state_dict is not None else seeded_text_weights(model, TEXT_ENCODER_SEED),
                          strict=True)
    return model


def build_text_encoder(text_config: dict | None = None, state_dict: dict | None = None):
    """The same text encoder as a comfy.sd.CLIP: ComfyUI's PixArt T5 tokenizer in front of `build_text_model`."""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.pixart_t5

    text_config = {**DEFAULT_TEXT_CONFIG, **(text_config or {})}
    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.pixart_t5.PixArtTokenizer,
                                                    comfy.text_encoders.pixart_t5.pixart_te())
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32, "t5xxl_model_config": text_config})
    weights = state_dict if state_dict is not None else seeded_text_weights(clip.cond_stage_model, TEXT_ENCODER_SEED)
    clip.cond_stage_model.load_state_dict(weights, strict=True)
    return clip


def initialise(module: torch.nn.Module, seed: int) -> None:
    """Training's starting point (ComfyUI's ops leave weights uninitialised): normal(0, 0.02) matrices, zero
    biases, unit norm scales."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.ndim == 1 and ("norm" in name or name.endswith(".scale")):
                p.fill_(1.0)
            elif p.ndim == 1:
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def seeded_text_weights(text_model, seed: int) -> dict:
    """The fixed random text encoder, in name order: token embeddings normal(0, 1), every other matrix
    normal(0, 0.02), norm scales 1. Small attention and feed-forward weights keep each token's state mostly its
    own embedding, so a word encoded alone (a concept) stays close to the same word inside a caption, as a trained
    encoder's would; larger random weights scramble tokens into their context."""
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, p in sorted(text_model.state_dict().items()):
        if not p.is_floating_point() or p.ndim == 0:
            weights[name] = p
        elif p.ndim == 1:
            weights[name] = torch.ones_like(p, dtype=torch.float32)
        elif name.endswith("shared.weight"):
            weights[name] = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        else:
            weights[name] = torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.02
    return weights


def save_shapes_model(path: str, model_patcher, text_model, config: dict, metadata: dict | None = None,
                      dtype=torch.float16) -> None:
    """Both state dicts in one safetensors file (diffusion model in `dtype`, norms and embedders as trained)."""
    from safetensors.torch import save_file

    tensors = {}
    for name, t in model_patcher.model.diffusion_model.state_dict().items():
        tensors[f"diffusion_model.{name}"] = t.detach().to("cpu", dtype).contiguous()
    # The text encoder is not stored: it is its seeded weights, made again on load (save what training read).
    if not all(torch.equal(t, seeded) for t, seeded in zip(text_model.state_dict().values(),
                                                            seeded_text_weights(text_model, TEXT_ENCODER_SEED).values())):
        raise ValueError("the text encoder is not the seeded one: its weights would not load back")
    info = {"dit_config": json.dumps(config), "text_config": json.dumps(text_sizes(text_model)),
            "text_seed": str(TEXT_ENCODER_SEED)}
    info.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=info)


def text_sizes(text_model) -> dict:
    """The tiny T5's sizes, read back from its modules (what `build_text_model` needs to rebuild it)."""
    t5 = text_model.t5xxl.transformer
    attention = t5.encoder.block[0].layer[0].SelfAttention
    heads = attention.num_heads
    return {"d_model": t5.shared.weight.shape[1], "d_ff": t5.encoder.block[0].layer[-1].DenseReluDense.wo.in_features,
            "d_kv": attention.q.out_features // heads, "num_heads": heads, "num_layers": len(t5.encoder.block)}


def load_shapes_model(path: str = DEFAULT_PATH, dtype=torch.float32, device=None):
    """(ModelPatcher, CLIP, metadata) from a file `save_shapes_model` wrote."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["dit_config"])
    text_config = json.loads(metadata["text_config"])
    model = build_diffusion_model(config, dtype=dtype, device=device)
    dit = {k[len("diffusion_model."):]: v for k, v in tensors.items() if k.startswith("diffusion_model.")}
    missing, unexpected = model.model.diffusion_model.load_state_dict(dit, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: diffusion model weights do not fit its config: missing {missing}, "
                         f"unexpected {unexpected}")
    if int(metadata.get("text_seed", TEXT_ENCODER_SEED)) != TEXT_ENCODER_SEED:
        raise ValueError(f"{path}: its text encoder has seed {metadata['text_seed']}, this code makes {TEXT_ENCODER_SEED}")
    clip = build_text_encoder(text_config)
    return model, clip, metadata
