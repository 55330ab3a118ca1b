"""Tiny random-weight LTX-2.x audio-video models (comfy's LTXAVModel) and their Gemma 3 text encoder, and LTX-Video
0.9.x (comfy's LTXVModel) and its T5-XXL encoder, as ComfyUI's loaders build them.

Models come from comfy.supported_models.LTXAV + model_base.LTXAV in a real ModelPatcher, with the unet_config keys
ComfyUI's detection sets ("ltxav") plus the transformer config a checkpoint's metadata adds, only smaller: video
and audio 2 heads of 32 (cross-attention width 64), 3 blocks, 2-layer embeddings connectors with 2 heads and the
stock 128 learnable registers. 128 video latent channels and 8 x 16 audio latent channels as the real latents.

Variants:
  2    LTX-2: the Gemma states through one linear projection (single_linear, 48 wide); the model runs its video and
       audio embeddings connectors on them, then caption_projection (PixArt's Linear, GELU-tanh, Linear) per stream
  2.3  LTX-2.3: the Gemma states through a video and an audio projection (dual_linear, 64 + 64 wide); the connectors
       run on them after caption_projection (an identity here); cross-attention AdaLN (the text modulated by the
       prompt timestep per block) and per-head gated attention

The text encoder is ComfyUI's LTXAVTEModel (all Gemma layers stacked, normalised and projected) with
LTXAVGemmaTokenizer (a small trained Gemma SentencePiece model), over ComfyUI's Gemma3_12B class at a tiny
config (3 layers of 32, no vision tower: it is never run for text). LTX-Video's (ltxv_model, ltxv_clip): the
video half of these blocks, T5-XXL text (32 wide here, with its attention mask) through caption_projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from concept_attention_tests.comfy.tiny.tiny_models import patcher, randomize
from concept_attention_tests.comfy.tiny.tiny_text_encoders import gemma_spiece_model

VARIANTS = ("2", "2.3")
HEADS, HEAD_DIM = 2, 32
AUDIO_HEADS, AUDIO_HEAD_DIM = 2, 32  # as wide as the video (the tests score audio rows against video keys)
GEMMA_WIDTH = 32
CAPTION_CHANNELS = 48
T5_WIDTH = 32  # LTX-Video's tiny T5-XXL  # LTX-2's single projection of the Gemma states
VIDEO_CHANNELS = 128
AUDIO_CHANNELS, AUDIO_BINS = 8, 16
WORDS = ("dog", "cat", "sky", "green grass", "running", "under the", "a dog running on green grass under the sky",
         "red", "ball", "tree")


def unet_config(variant: str = "2", depth: int = 3) -> dict:
    inner, audio_inner = HEADS * HEAD_DIM, AUDIO_HEADS * AUDIO_HEAD_DIM
    config = {
        "image_model": "ltxav", "num_layers": depth, "attention_head_dim": HEAD_DIM, "num_attention_heads": HEADS,
        "cross_attention_dim": inner, "audio_attention_head_dim": AUDIO_HEAD_DIM,
        "audio_num_attention_heads": AUDIO_HEADS, "audio_cross_attention_dim": audio_inner,
        "caption_channels": CAPTION_CHANNELS, "in_channels": VIDEO_CHANNELS,
        "audio_in_channels": AUDIO_CHANNELS * AUDIO_BINS, "rope_type": "split", "frequencies_precision": "float64",
        "connector_attention_head_dim": CAPTION_CHANNELS // 2, "connector_num_attention_heads": 2,
        "connector_num_layers": 2, "use_keyframes_abs_pos_embedding": False,
    }
    if variant == "2.3":
        config.update(caption_proj_before_connector=True, caption_projection_first_linear=False,
                      cross_attention_adaln=True, apply_gated_attention=True, connector_apply_gated_attention=True,
                      connector_attention_head_dim=HEAD_DIM, audio_connector_attention_head_dim=AUDIO_HEAD_DIM,
                      audio_connector_num_attention_heads=AUDIO_HEADS)
    elif variant != "2":
        raise ValueError(f"unknown LTX-2 variant {variant!r}; one of {VARIANTS}")
    return config


def _randomize_ltx(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    randomize(model, seed)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1000)
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if "Norm" in type(module).__name__ and isinstance(weight, torch.nn.Parameter):
                weight.copy_((1.0 + 0.1 * torch.randn(weight.shape, generator=gen)).to(weight.dtype))
        # Sharper text cross-attention, video and audio (trained models attend far from uniformly): query and key norm
        # scales of 4.
        for block in model.transformer_blocks:
            audio = getattr(block, "audio_attn2", None)
            for norm in (block.attn2.q_norm, block.attn2.k_norm) + ((audio.q_norm, audio.k_norm) if audio else ()):
                norm.weight.mul_(4.0)
    return model


def ltx2_model(variant: str = "2", dtype=torch.float32, depth: int = 3, seed: int = 0):
    """A real ModelPatcher over ComfyUI's LTXAV of this variant, random weights."""
    import comfy.supported_models

    config = comfy.supported_models.LTXAV(unet_config(variant, depth))
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    _randomize_ltx(model.diffusion_model, seed)
    return patcher(model)


def ltxv_model(dtype=torch.float32, depth: int = 3, seed: int = 0):
    """LTX-Video 0.9.x (comfy's LTXVModel through comfy.supported_models.LTXV): video 2 heads of 32, T5 text 32 wide
    through caption_projection, random weights."""
    import comfy.supported_models

    config = comfy.supported_models.LTXV({"image_model": "ltxv", "num_layers": depth, "attention_head_dim": HEAD_DIM,
                                          "num_attention_heads": HEADS, "cross_attention_dim": HEADS * HEAD_DIM,
                                          "caption_channels": T5_WIDTH, "in_channels": VIDEO_CHANNELS,
                                          "use_keyframes_abs_pos_embedding": False})
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    _randomize_ltx(model.diffusion_model, seed)
    return patcher(model)


def ltxv_clip(seed: int = 21):
    """ComfyUI's LTX-Video text encoder (CLIPLoader type `ltxv`: LTXVT5Tokenizer + ltxv_te, T5-XXL with its attention
    mask) over a tiny T5 config."""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.lt as lt

    from concept_attention_tests.comfy.tiny.tiny_models import tiny_t5_config

    target = comfy.supported_models_base.ClipTarget(lt.LTXVT5Tokenizer, lt.ltxv_te())
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32,
                                                       "t5xxl_model_config": tiny_t5_config(T5_WIDTH)})
    randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


def _tiny_gemma_classes():
    import comfy.sd1_clip
    import comfy.text_encoders.llama as llama
    import comfy.text_encoders.lt as lt

    @dataclass
    class TinyGemma3Config(llama.Gemma3_12B_Config):
        vocab_size: int = 256
        hidden_size: int = GEMMA_WIDTH
        intermediate_size: int = 2 * GEMMA_WIDTH
        num_hidden_layers: int = 3
        num_attention_heads: int = 2
        num_key_value_heads: int = 1
        head_dim = 16
        sliding_attention = [4, False]

    class TinyGemma3(llama.Gemma3_12B):
        """ComfyUI's Gemma3_12B at a tiny config, without the vision tower (never run for text)."""

        def __init__(self, config_dict, dtype, device, operations):
            torch.nn.Module.__init__(self)
            config = TinyGemma3Config(**config_dict)
            self.num_layers = config.num_hidden_layers
            self.model = llama.Llama2_(config, device=device, dtype=dtype, ops=operations)
            self.dtype = dtype

    class TinyGemma3Model(lt.Gemma3_12BModel):
        """Gemma3_12BModel's SDClipModel (all layers, attention masks, start 2, pad 0) over TinyGemma3."""

        def __init__(self, device="cpu", layer="all", layer_idx=None, dtype=None, attention_mask=True,
                     model_options={}):
            comfy.sd1_clip.SDClipModel.__init__(
                self, device=device, layer=layer, layer_idx=layer_idx, textmodel_json_config={}, dtype=dtype,
                special_tokens={"start": 2, "pad": 0}, layer_norm_hidden_state=False, model_class=TinyGemma3,
                enable_attention_masks=attention_mask, return_attention_masks=attention_mask,
                model_options=model_options)
            self.dtypes = {dtype}

    return TinyGemma3Model


def ltx2_clip(variant: str = "2", seed: int = 23):
    """ComfyUI's LTX-2 text encoder (LTXAVGemmaTokenizer + LTXAVTEModel) over a tiny Gemma 3: LTX-2's single
    projection (48 wide) or LTX-2.3's video and audio projections (64 + 64 wide)."""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.lt as lt

    if variant == "2.3":
        te = lt.ltxav_te(text_projection_type="dual_linear", text_encoder_model=_tiny_gemma_classes(),
                         video_projection_dim=HEADS * HEAD_DIM, audio_projection_dim=AUDIO_HEADS * AUDIO_HEAD_DIM,
                         video_projection_bias=True)
    else:
        te = lt.ltxav_te(text_projection_type="single_linear", text_encoder_model=_tiny_gemma_classes(),
                         video_projection_dim=CAPTION_CHANNELS)
    spiece = torch.frombuffer(bytearray(gemma_spiece_model(WORDS)), dtype=torch.uint8)  # as a checkpoint stores it
    target = comfy.supported_models_base.ClipTarget(lt.LTXAVGemmaTokenizer, te)
    clip = comfy.sd.CLIP(target=target, tokenizer_data={"spiece_model": spiece}, model_options={"dtype": torch.float32})
    randomize(clip.cond_stage_model, seed, std=0.2)
    # ComfyUI runs its encoders in inference mode; outside it (these tests), the projection next to the frozen Gemma
    # would track gradients into every conditioning.
    clip.cond_stage_model.requires_grad_(False)
    return clip


def av_latent(batch: int = 1, frames: int = 3, height: int = 4, width: int = 6, audio_frames: int = 5,
              seed: int | None = None):
    """An LTX-2 AV latent as EmptyLTXVLatentVideo + LTXVEmptyLatentAudio + LTXVConcatAVLatent make it: a NestedTensor
    (video [B, 128, T, h, w], audio [B, 8, audio frames, 16]); random values where a seed is given."""
    import comfy.nested_tensor

    shapes = [(batch, VIDEO_CHANNELS, frames, height, width), (batch, AUDIO_CHANNELS, audio_frames, AUDIO_BINS)]
    if seed is None:
        return comfy.nested_tensor.NestedTensor([torch.zeros(s) for s in shapes])
    g = torch.Generator().manual_seed(seed)
    return comfy.nested_tensor.NestedTensor([torch.randn(s, generator=g) for s in shapes])
