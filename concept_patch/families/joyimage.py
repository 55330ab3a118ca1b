"""JoyImage (JoyAI-Image-Edit): comfy's JoyImageTransformer3DModel, dual-stream blocks with a dit hook, Qwen3-VL-8B text.

Concept tokens: the concept's own tokens in the Qwen3-VL-8B states (the last decoder layer before the final norm;
the encoder drops the system prompt from its output), through the condition embedder's text_embedder
(PixArtAlphaTextProjection: Linear, GELU(tanh), Linear), as the prompt's text is embedded.
Positions: the model rotates the image tokens only (a fused RMS-norm + RoPE kernel); text, and so the concepts, are
not rotated.
Modulation: the block's txt_mod (its own learned table added to the model's 6-way timestep projection `vec`), exactly
as the text stream gets it. The text path: txt_norm1 (LayerNorm, no affine) -> (1 + scale), shift -> txt_attn_qkv ->
per-head RMS q/k norms -> joint attention -> txt_attn_proj, gated; txt_norm2 -> modulation -> txt_mlp, gated.
Token order: [picture ; reference pictures ; text]; the maps cover the picture's tokens, the first of the sequence.
"""

from __future__ import annotations

from .base import ModelClass, ModelFamily, TextEncoder, TokenGrid
from .modulation import gated_update, modulated_layer_norm
from .stream_kinds import TextModules


class JoyImageBlocks(TextModules):
    """A JoyImageTransformerBlock's text modules: txt_norm1/2 with txt_mod, attn.txt_attn_qkv with its q/k norms,
    attn.txt_attn_proj and txt_mlp."""

    def image_tokens(self, block_args, forward):
        # The picture's tokens open the joint sequence; reference pictures, then the text, follow.
        return slice(0, forward.num_image_tokens)

    def qkv(self, block, concepts, block_args, forward):
        def text_modulation():
            # JoyImageModulate: its table plus vec [B, 6, hidden], six [B, hidden] chunks; scales as 1 + scale.
            shift1, scale1, gate1, shift2, scale2, gate2 = (m.unsqueeze(1) for m in block.txt_mod(
                forward.rows(block_args["vec"])))
            return shift1, 1 + scale1, gate1, shift2, 1 + scale2, gate2

        mod = forward.block_constant("text_modulation", text_modulation)
        x = modulated_layer_norm(concepts, mod[0], mod[1], block.txt_norm1.eps)
        attn = block.attn
        q, k, v = attn.txt_attn_qkv(x).chunk(3, dim=-1)
        heads = attn.num_attention_heads
        q, k, v = (t.unflatten(-1, (heads, -1)) for t in (q, k, v))
        q, k = attn.txt_attn_q_norm(q), attn.txt_attn_k_norm(k)
        return (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)), mod

    def update(self, block, concepts, concept_out, saved):
        return gated_update(concepts, block.attn.txt_attn_proj(concept_out), saved, block.txt_norm2.eps, block.txt_mlp)


class JoyImageFamily(ModelFamily):
    name = "JoyImage"
    variants = ("JoyAI-Image-Edit",)
    model = ModelClass("comfy.ldm.joyimage.model", "JoyImageTransformer3DModel")
    encoders = (TextEncoder("qwen3vl_8b", "Qwen3-VL 8B", "CLIPLoader, `joyimage`", layer="hidden -1",
                            note="the encoder drops the system prompt, concepts are their own tokens after it"),)
    blocks = (JoyImageBlocks("double_blocks"),)
    grid = TokenGrid("patch_size")
    position = "none: the model rotates the picture's tokens only, its text (and the concepts) are not rotated"
    modulation = "the block's own `txt_mod` table plus the timestep projection, as the text's"
    test_ids = ("joyimage",)
    runs_on_comfyui_0_3 = False

    def context_dim(self, diffusion_model):
        return diffusion_model.condition_embedder.text_embedder.linear_1.in_features

    def initial_concepts(self, diffusion_model, embeddings):
        return diffusion_model.condition_embedder.text_embedder(embeddings)
