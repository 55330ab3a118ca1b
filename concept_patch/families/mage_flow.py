"""Mage-Flow: Qwen-Image's dual-stream blocks at patch 1 over 128-channel latents, Qwen3-VL-4B text.

Everything is as for Qwen-Image except that the model gives text tokens zero position ids (RoPE
leaves them, and so the concepts, unrotated) and reads 1×1 patches.
"""

from __future__ import annotations

from .base import ModelClass, TextEncoder, TokenGrid
from .qwen_image import QwenImageFamily


class MageFlowFamily(QwenImageFamily):
    name = "Mage-Flow"
    variants = ("Mage-Flow",)
    model = ModelClass("comfy.ldm.mage_flow.model", "MageFlowTransformer2DModel")
    encoders = (TextEncoder("qwen3vl_4b", "Qwen3-VL 4B", "CLIPLoader, `mage`"),)
    grid = TokenGrid("patch_size", round_up=False)
    position = "zero ids: the model does not rotate text"
    modulation = "as Qwen-Image"
    test_ids = ("mage",)
    runs_on_comfyui_0_3 = False

    def text_start(self, diffusion_model, grid):
        return None  # text ids are zero
