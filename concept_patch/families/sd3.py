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

from .base import DualStreamFamily
from .modulation import modulated_layer_norm, split_modulation


class SD3Family(DualStreamFamily):
    name = "SD3/SD3.5"
    text_spaces = ("clip-lg", "t5xxl")
    forward_wrapper_type = "apply_model"

    def matches(self, diffusion_model):
        from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

        return isinstance(diffusion_model, MMDiT) and hasattr(diffusion_model, "joint_blocks")

    def num_blocks(self, diffusion_model):
        return len(diffusion_model.joint_blocks)

    def block(self, diffusion_model, index):
        return diffusion_model.joint_blocks[index]

    def context_dim(self, diffusion_model):
        return diffusion_model.context_embedder.in_features

    def token_grid(self, diffusion_model, latent_hw):
        p = diffusion_model.x_embedder.patch_size[0]
        h, w = latent_hw
        return ((h + 1) // p, (w + 1) // p)

    def initial_concepts(self, diffusion_model, embeddings):
        return diffusion_model.context_embedder(embeddings)

    def concept_qkv(self, block, concepts, block_args, forward):
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

    def update_concepts(self, block, concepts, concept_out, saved):
        ctx = block.context_block
        if ctx.pre_only:
            return concepts
        if saved[0] is None:
            return ctx.post_attention(concept_out, *saved[1:])
        _, _, gate1, shift2, scale2, gate2 = saved
        concepts = torch.addcmul(concepts, ctx.attn.post_attention(concept_out), gate1)
        mlp_in = modulated_layer_norm(concepts, shift2, scale2, ctx.norm2.eps)
        return torch.addcmul(concepts, ctx.mlp(mlp_in), gate2)


def _standard_layer_norm_block(ctx) -> bool:
    """LayerNorm pre-norms and shift/scale/gate modulation (SD3, SD3.5): the fused path applies."""
    norms = (ctx.norm1,) if ctx.pre_only else (ctx.norm1, ctx.norm2)
    return not ctx.scale_mod_only and all(isinstance(n, torch.nn.LayerNorm) for n in norms)
