"""Tiny random-weight Wan 2.1 / 2.2 models and their UMT5-XXL text encoder, as ComfyUI's loaders build them.

Models come from comfy.supported_models.WAN21_T2V / WAN21_I2V / WAN22_T2V (+ model_base.WAN21 / WAN22, flow
matching, shift 8) in a real ModelPatcher, with the unet_config keys ComfyUI's detection sets (model_detection's
"wan2.1" branch), only smaller: hidden 64, 2 heads of 32, FFN 96, 1x2x2 patches, text 32 wide (the tiny UMT5's).

Variants:
  t2v   Wan 2.1 text-to-video (16 latent channels; WanT2VCrossAttention)
  i2v   Wan 2.1 image-to-video: 36 input channels (mask + image latent), CLIP-vision tokens through img_emb
        into WanI2VCrossAttention's own k_img / v_img call
  ti2v  Wan 2.2 TI2V 5B: 48-channel latents of the Wan 2.2 VAE (16 px a cell)
  vace  Wan 2.1 VACE (vace_model): control blocks between the main blocks

The text encoder is ComfyUI's CLIPLoader `wan` pair (WanT5Tokenizer with a small trained SentencePiece model,
WanT5Model's UMT5-XXL) shrunk through ComfyUI's "umt5xxl_model_config" model option.
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.tiny.tiny_models import patcher, randomize

CONTEXT_DIM = 32  # the tiny UMT5's width
HEADS, HEAD_DIM = 2, 32
CLIP_VISION_TOKENS = 5  # CLIP-vision penultimate states [B, tokens, 1280]: the real one has 257
VARIANTS = ("t2v", "i2v", "ti2v", "vace")
WORDS = ("dog", "cat", "sky", "green grass", "running", "under the", "a dog running on green grass under the sky",
         "red", "ball", "tree")


def unet_config(variant: str, depth: int = 3) -> dict:
    config = {
        "image_model": "wan2.1", "model_type": "t2v", "dim": HEADS * HEAD_DIM, "out_dim": 16, "num_heads": HEADS,
        "ffn_dim": 96, "num_layers": depth, "patch_size": (1, 2, 2), "freq_dim": 32, "window_size": (-1, -1),
        "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6, "in_dim": 16, "text_dim": CONTEXT_DIM,
    }
    if variant == "i2v":
        config.update(model_type="i2v", in_dim=36)
    elif variant == "ti2v":
        config.update(in_dim=48, out_dim=48)
    elif variant not in ("t2v", "vace"):
        raise ValueError(f"unknown Wan variant {variant!r}; one of {VARIANTS}")
    return config


def _randomize_wan(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    randomize(model, seed)
    with torch.no_grad():
        # Norm scales near 1 (RMSNorm norm_q / norm_k / norm_k_img and the affine LayerNorms).
        gen = torch.Generator().manual_seed(seed + 1000)
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if "Norm" in type(module).__name__ and isinstance(weight, torch.nn.Parameter):
                weight.copy_((1.0 + 0.1 * torch.randn(weight.shape, generator=gen)).to(weight.dtype))
        # Sharper cross-attention (trained Wan attends far from uniformly): query and key scales of 4 make the
        # logits 16 times those of unit scales, so the maps of the tiny model differ from token to token.
        for block in model.blocks:
            for norm in (block.cross_attn.norm_q, block.cross_attn.norm_k):
                norm.weight.mul_(4.0)
    return model


def wan_model(variant: str = "t2v", dtype=torch.float32, depth: int = 3, seed: int = 0):
    """A real ModelPatcher over ComfyUI's Wan of this variant, random weights."""
    import comfy.supported_models

    if variant == "vace":
        return vace_model(dtype, depth, seed)

    config_cls = {"i2v": comfy.supported_models.WAN21_I2V, "ti2v": comfy.supported_models.WAN22_T2V}.get(
        variant, comfy.supported_models.WAN21_T2V)
    config = config_cls(unet_config(variant, depth))
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    _randomize_wan(model.diffusion_model, seed)
    return patcher(model)


def vace_model(dtype=torch.float32, depth: int = 3, seed: int = 0):
    """Wan 2.1 VACE (VaceWanModel): Wan's blocks plus a control block after block 0 (ComfyUI spaces them every
    num_layers // vace_layers blocks), which reads the control video (16 latent channels) and its mask (64) that
    WanVaceToVideo conditions on (zeros and ones without it, as model_base.WAN21_Vace fills them)."""
    import comfy.supported_models

    config = comfy.supported_models.WAN21_Vace({**unet_config("t2v", depth), "model_type": "vace", "vace_in_dim": 96,
                                                 "vace_layers": 1})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    _randomize_wan(model.diffusion_model, seed)
    return patcher(model)


def camera_model(depth: int = 1, seed: int = 0):
    """Wan 2.1 camera control (CameraWanModel): a Wan variant the pack does not read yet."""
    import comfy.supported_models

    config = comfy.supported_models.WAN21_Camera({**unet_config("t2v", depth), "model_type": "camera", "in_dim": 32})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    randomize(model.diffusion_model, seed)
    return patcher(model)


def umt5_spiece_model(words=WORDS) -> bytes:
    """A small SentencePiece model with UMT5's special ids (pad 0, eos 1, unk 2, no bos), trained on the words."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([*words, *words, " ".join(words)]), model_writer=model, vocab_size=120,
        model_type="bpe", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0,
        minloglevel=2)
    return model.getvalue()


def wan_clip(seed: int = 23):
    """ComfyUI's Wan text encoder (CLIPLoader type `wan`: WanT5Tokenizer + WanT5Model) with a tiny UMT5-XXL."""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.wan

    umt5 = {"d_model": CONTEXT_DIM, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 2, "vocab_size": 128}
    spiece = torch.frombuffer(bytearray(umt5_spiece_model()), dtype=torch.uint8)  # as a checkpoint stores it
    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.wan.WanT5Tokenizer, comfy.text_encoders.wan.te())
    clip = comfy.sd.CLIP(target=target, tokenizer_data={"spiece_model": spiece},
                         model_options={"dtype": torch.float32, "umt5xxl_model_config": umt5})
    randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


class ClipVisionOutput:
    """What CLIPVisionEncode hands the Wan image-to-video nodes: penultimate CLIP-vision states."""

    def __init__(self, batch: int = 1, seed: int = 9):
        gen = torch.Generator().manual_seed(seed)
        self.penultimate_hidden_states = torch.randn(batch, CLIP_VISION_TOKENS, 1280, generator=gen)
