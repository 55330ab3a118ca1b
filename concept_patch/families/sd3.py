"""SD3 / SD3.5 (medium with MMDiT-X, large, large-turbo): comfy MMDiT with JointBlocks.

Concept tokens: one vector per concept from the CLIP-L/G part of the SD3 text states
(the T5 part when no CLIP is loaded), then context_embedder. Positions: SD3 adds absolute
position embeddings to image tokens only, so concepts, like text, carry none.
Modulation: the block's own c_mod (timestep + pooled CLIP), exactly as the text stream gets
it; this is what the authors' SD3 code does. Blocks: every context_block; the last one is
pre_only: concepts are normed, modulated and attended (its map counts) but not updated.
MMDiT-X layers make a second, image-only attention call; only the joint call is read.
"""

from __future__ import annotations

import torch

from .base import ModelClass, ModelFamily, TextEncoder, TokenGrid
from .modulation import modulated_layer_norm, split_modulation
from .stream_kinds import TextModules


class JointBlocks(TextModules):
    """A JointBlock's context_block: its norms, modulation, attention projections and MLP."""

    def qkv(self, block, concepts, block_args, forward):
        ctx = block.context_block
        vec = forward.rows(block_args["vec"])
        if _standard_layer_norm_block(ctx):
            saved = forward.block_constant("text_modulation", lambda: split_modulation(
                ctx.adaLN_modulation(vec), 2 if ctx.pre_only else 6))
            q, k, v = ctx.attn.pre_attention(modulated_layer_norm(concepts, saved[0], saved[1], ctx.norm1.eps))
        else:  # RMSNorm or scale-only modulation: ComfyUI's own pre_attention
            (q, k, v), intermediates = ctx.pre_attention(concepts, vec)
            saved = None if intermediates is None else (None, *intermediates)
        b, r = q.shape[0], q.shape[1]
        heads = ctx.attn.num_heads
        q = q.view(b, r, heads, -1).transpose(1, 2)
        k = k.view(b, r, heads, -1).transpose(1, 2)
        v = v.view(b, r, heads, -1).transpose(1, 2)
        return (q, k, v), saved

    def update(self, block, concepts, concept_out, saved):
        ctx = block.context_block
        if ctx.pre_only:
            return concepts
        if saved[0] is None:
            return ctx.post_attention(concept_out, *saved[1:])
        _, _, gate1, shift2, scale2, gate2 = saved
        concepts = torch.addcmul(concepts, ctx.attn.post_attention(concept_out), gate1)
        mlp_in = modulated_layer_norm(concepts, shift2, scale2, ctx.norm2.eps)
        return torch.addcmul(concepts, ctx.mlp(mlp_in), gate2)


class SD3Family(ModelFamily):
    name = "SD3/SD3.5"
    variants = ("SD3 medium", "SD3.5 medium (MMDiT-X)", "large", "large turbo")
    model = ModelClass("comfy.ldm.modules.diffusionmodules.mmdit", "MMDiT")
    encoders = (
        TextEncoder("clip-lg", "CLIP-L/G", "TripleCLIPLoader, or CLIPLoader `sd3`",
                    note="with T5-XXL; concepts from the CLIP-L/G part"),
        TextEncoder("t5xxl", "T5-XXL", "CLIPLoader, `sd3`", note="when no CLIP is loaded"),
    )
    blocks = (JointBlocks("joint_blocks"),)
    grid = TokenGrid("x_embedder.patch_size", round_up=False)
    position = "none: SD3 adds positions to image tokens only"
    modulation = "the block's own `c_mod` (timestep + pooled CLIP), as the text gets it"
    runs_on_comfyui_0_3 = True

    def is_variant(self, diffusion_model):
        return hasattr(diffusion_model, "joint_blocks")

    def context_dim(self, diffusion_model):
        return diffusion_model.context_embedder.in_features

    def initial_concepts(self, diffusion_model, embeddings):
        return diffusion_model.context_embedder(embeddings)


def _standard_layer_norm_block(ctx) -> bool:
    """LayerNorm pre-norms and shift/scale/gate modulation (SD3, SD3.5): the fused path applies."""
    norms = (ctx.norm1,) if ctx.pre_only else (ctx.norm1, ctx.norm2)
    return not ctx.scale_mod_only and all(isinstance(n, torch.nn.LayerNorm) for n in norms)
