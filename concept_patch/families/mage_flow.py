"""Mage-Flow: Qwen-Image's dual-stream blocks at patch 1 over 128-channel latents, Qwen3-VL-4B text.

Everything is as for Qwen-Image except that the model gives text tokens zero position ids (RoPE
leaves them, and so the concepts, unrotated) and reads 1×1 patches.
"""

from __future__ import annotations

from .base import is_instance_of
from .qwen_image import QwenImageFamily


class MageFlowFamily(QwenImageFamily):
    name = "Mage-Flow"
    text_spaces = ("qwen3vl_4b",)

    def matches(self, diffusion_model):
        return is_instance_of(diffusion_model, "comfy.ldm.mage_flow.model", "MageFlowTransformer2DModel")

    def unsupported_reason(self, diffusion_model):
        return None

    def text_start(self, diffusion_model, grid):
        return None  # text ids are zero
