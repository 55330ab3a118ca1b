"""Qwen-Image, Qwen-Image-Edit (2509, 2511): comfy's QwenImageTransformer2DModel, 60 dual-stream blocks.

Concept tokens: the concept's own tokens in the Qwen2.5-VL encoding (the encoder drops the system
prompt from its output), then txt_norm and txt_in like prompt text.
Positions: text tokens sit on the diagonal (l, l, l) from txt_start = max(h/2, w/2) of the token
grid; a concept takes txt_start + the index its own tokens have in its own conditioning, and its
q/k are roped with the model's pe_embedder (cast to the model dtype, as the model does) and apply_rope1.
Modulation: the block's txt_mod on the block's own timestep embedding, exactly as the text stream
gets it. Edit 2511 (index_timestep_zero) hands the block two rows per picture (the reference
images' timestep-0 rows follow); the text, and so the concepts, take the first half.
Reference images follow the main image in the joint sequence, so the image slice is text-first.
Qwen-Image-Layered (several layers in one latent) is refused: its maps would mix layers.
"""

from __future__ import annotations

import torch

from .base import ModelClass, ModelFamily, TextEncoder, TokenGrid
from .modulation import gated_update, modulated_layer_norm, split_modulation
from .stream_kinds import TextModules


class QwenImageBlocks(TextModules):
    """A QwenImageTransformerBlock's text modules: txt_norm1/2 with txt_mod, add_q/k/v_proj with their norms,
    to_add_out and txt_mlp."""

    def qkv(self, block, concepts, block_args, forward):
        temb = block_args["vec"]
        if temb.shape[0] == 2 * block_args["img"].shape[0]:
            temb = temb[: block_args["img"].shape[0]]  # index_timestep_zero: the text's rows come first
        mod = forward.block_constant("text_modulation", lambda: split_modulation(block.txt_mod(forward.rows(temb)), 6))
        x = modulated_layer_norm(concepts, mod[0], mod[1], block.txt_norm1.eps)
        attn = block.attn
        b, r = x.shape[0], x.shape[1]
        q = attn.norm_added_q(attn.add_q_proj(x).view(b, r, attn.heads, -1).transpose(1, 2))
        k = attn.norm_added_k(attn.add_k_proj(x).view(b, r, attn.heads, -1).transpose(1, 2))
        v = attn.add_v_proj(x).view(b, r, attn.heads, -1).transpose(1, 2)
        pe = forward.family.concept_rope(forward, block_args)
        if pe is not None:
            from comfy.ldm.flux.math import apply_rope1

            q, k = apply_rope1(q, pe), apply_rope1(k, pe)
        return (q, k, v), mod

    def update(self, block, concepts, concept_out, saved):
        return gated_update(concepts, block.attn.to_add_out(concept_out), saved, block.txt_norm2.eps, block.txt_mlp)


class QwenImageFamily(ModelFamily):
    name = "Qwen-Image"
    variants = ("Qwen-Image", "Qwen-Image-Edit (2509, 2511)", "FireRed-Edit")
    model = ModelClass("comfy.ldm.qwen_image.model", "QwenImageTransformer2DModel")
    encoders = (TextEncoder("qwen25_7b", "Qwen2.5-VL 7B", "CLIPLoader, `qwen_image`", file="qwen_2.5_vl_7b", layer="last",
                            note="the encoder drops the system prompt, concepts are their own tokens after it"),)
    blocks = (QwenImageBlocks("transformer_blocks"),)
    grid = TokenGrid("patch_size", round_up=False)
    position = ("the text diagonal (l, l, l) from `txt_start` = max(h/2, w/2) of the token grid: the concept sits at "
                "`txt_start` + its own tokens' index in its conditioning")
    modulation = ("the block's own `txt_mod` on the timestep embedding, as the text's; Edit 2511's timestep-0 rows "
                  "for the references are not the text's and not used")
    test_ids = ("qwen",)
    runs_on_comfyui_0_3 = False

    def refusal(self, diffusion_model):
        if getattr(getattr(diffusion_model, "time_text_embed", None), "use_additional_t_cond", False):
            return ("this is Qwen-Image-Layered, whose latent holds several picture layers in one token sequence; "
                    "its concept maps would mix the layers, so it is not supported")
        return None

    def context_dim(self, diffusion_model):
        return diffusion_model.txt_in.in_features

    def initial_concepts(self, diffusion_model, embeddings):
        return diffusion_model.txt_in(diffusion_model.txt_norm(embeddings))

    def text_start(self, diffusion_model, grid):
        return float(round(max(grid[1] // 2, grid[0] // 2)))

    def concept_rope(self, forward, block_args):
        """The concepts' RoPE table for this picture size, or None when the model does not rotate text."""
        diffusion_model = forward.diffusion_model
        start = self.text_start(diffusion_model, forward.grid)
        if start is None:
            return None

        def build():
            positions = self.required_text_positions(diffusion_model, forward.session.concepts)
            ids = (start + positions.to(torch.float32)).reshape(1, -1, 1).repeat(1, 1, 3)
            return diffusion_model.pe_embedder(ids.to(forward.device)).to(forward.dtype).contiguous()

        return forward.session.cached(("concept_rope", start, forward.dtype), forward.device, build)
