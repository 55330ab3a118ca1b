"""Test-only stand-ins for the stock loaders of the example workflows (example_workflows/).

The browser tier and scripts/make_examples.py run every example workflow on tiny
random-weight models: each loader of the workflow (UNETLoader, DualCLIPLoader, CLIPLoader,
TripleCLIPLoader, VAELoader, CheckpointLoaderSimple) is swapped for the node here with the same
outputs. Node ids start with "ConceptAttentionTest" so they never collide with the pack's own.

  ConceptAttentionTestTinyVAE            VAE    16 latent channels, 8 px a cell (Flux.1 / SD3 layout)
  ConceptAttentionTestTinyFlux2VAE       VAE    Flux.2's layout: 32 channels in 2x2 patches -> 128
                                                channels, 16 px a cell (batch-norm latent)
  ConceptAttentionTestTinyQwenImageVAE   VAE    Qwen-Image's (Wan 2.1) layout: 16 channels, 8 px a cell
  ConceptAttentionTestTinySD3Checkpoint  MODEL, CLIP, VAE  a tiny SD3 with its text encoder and VAE
  ConceptAttentionTestTinySD3Clip        CLIP   the tiny SD3 text encoder (CLIP-L/G + T5)
  ConceptAttentionTestTinyKlein          MODEL  a tiny Flux.2 Klein 4B
(Qwen-Image's model and text encoder stand-ins are in concept_attention_test_nodes.)
The models come from tests/comfy/tiny/tiny_models.py (its path is in CONCEPT_ATTENTION_TINY_MODELS, set
by tests/server/comfy_server.py).
"""

import importlib.util
import os


def _tiny_models():
    path = os.environ["CONCEPT_ATTENTION_TINY_MODELS"]
    spec = importlib.util.spec_from_file_location("concept_attention_example_tiny_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny_models = _tiny_models()


class _Seeded:
    CATEGORY = "testing"
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}


class ConceptAttentionTestTinyVAE(_Seeded):
    RETURN_TYPES = ("VAE",)

    def build(self, seed):
        return (tiny_models.vae(seed=seed + 3),)


def flux2_vae(seed: int = 5):
    """A comfy.sd.VAE in Flux.2's latent layout (as ComfyUI builds flux2-vae.safetensors) with tiny widths."""
    import comfy.ldm.models.autoencoder
    import comfy.sd
    import torch

    ddconfig = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
                "batch_norm_latent": True}
    params = {"ddconfig": ddconfig, "embed_dim": 32}
    template = comfy.ldm.models.autoencoder.AutoencoderKL(**params)
    tiny_models.randomize(template, seed, std=0.1)
    with torch.no_grad():  # a plain batch norm: mean 0, variance 1
        template.bn.running_mean.zero_()
        template.bn.running_var.fill_(1.0)
    vae = comfy.sd.VAE(sd=template.state_dict(), config={"params": params}, dtype=torch.float32)
    # what ComfyUI sets when it reads a batch-norm latent from the file
    vae.downscale_ratio = vae.upscale_ratio = 16
    vae.latent_channels = 128
    return vae


class ConceptAttentionTestTinyFlux2VAE(_Seeded):
    RETURN_TYPES = ("VAE",)

    def build(self, seed):
        return (flux2_vae(seed=seed + 5),)


def wan21_vae(seed: int = 6):
    """A comfy.sd.VAE in the Wan 2.1 layout Qwen-Image uses (16 channels, 8 px a cell), 16 wide:
    ComfyUI reads the width from the state dict."""
    import comfy.ldm.wan.vae
    import comfy.sd
    import torch

    template = comfy.ldm.wan.vae.WanVAE(dim=16, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                        temperal_downsample=[False, True, True], dropout=0.0)
    tiny_models.randomize(template, seed, std=0.1)
    return comfy.sd.VAE(sd=template.state_dict(), dtype=torch.float32)


class ConceptAttentionTestTinyQwenImageVAE(_Seeded):
    RETURN_TYPES = ("VAE",)

    def build(self, seed):
        return (wan21_vae(seed=seed + 6),)


class ConceptAttentionTestTinySD3Checkpoint(_Seeded):
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")

    def build(self, seed):
        return tiny_models.sd3_model(seed=seed), tiny_models.sd3_clip(), tiny_models.vae()


class ConceptAttentionTestTinySD3Clip(_Seeded):
    RETURN_TYPES = ("CLIP",)

    def build(self, seed):
        return (tiny_models.sd3_clip(seed=seed + 2),)


class ConceptAttentionTestTinyKlein(_Seeded):
    RETURN_TYPES = ("MODEL",)

    def build(self, seed):
        return (tiny_models.flux2_model("klein4b", seed=seed),)


NODE_CLASS_MAPPINGS = {
    "ConceptAttentionTestTinyVAE": ConceptAttentionTestTinyVAE,
    "ConceptAttentionTestTinyFlux2VAE": ConceptAttentionTestTinyFlux2VAE,
    "ConceptAttentionTestTinyQwenImageVAE": ConceptAttentionTestTinyQwenImageVAE,
    "ConceptAttentionTestTinySD3Checkpoint": ConceptAttentionTestTinySD3Checkpoint,
    "ConceptAttentionTestTinySD3Clip": ConceptAttentionTestTinySD3Clip,
    "ConceptAttentionTestTinyKlein": ConceptAttentionTestTinyKlein,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ConceptAttentionTestTinyVAE": "Tiny VAE (ConceptAttention tests)",
    "ConceptAttentionTestTinyFlux2VAE": "Tiny Flux.2 VAE (ConceptAttention tests)",
    "ConceptAttentionTestTinyQwenImageVAE": "Tiny Qwen-Image VAE (ConceptAttention tests)",
    "ConceptAttentionTestTinySD3Checkpoint": "Tiny SD3 checkpoint (ConceptAttention tests)",
    "ConceptAttentionTestTinySD3Clip": "Tiny SD3 CLIP (ConceptAttention tests)",
    "ConceptAttentionTestTinyKlein": "Tiny Flux.2 Klein 4B (ConceptAttention tests)",
}
