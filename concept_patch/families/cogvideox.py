"""CogVideoX (2B, 5B, 1.5; text-to-video, image-to-video, Fun inpaint): comfy's CogVideoXTransformer3DModel.

Blocks: CogVideoXBlock, called by the model with no dit hook; an object patch on each block's forward
offers the call to the dit replace patches (stream/block_hooks.py), as for HiDream.
Weights: text and video share every weight of a block (q/k/v, norm_q/norm_k, attn_out, the FF); only the
adaLN differs ("expert adaLN"): each LayerNormZero gives a video (shift, scale, gate) and a text one. So
the concepts go through the shared modules with the text modulation, exactly as the block treats its
text rows: norm1 (affine LayerNorm) · (1 + enc_scale) + enc_shift, q/k/v, norm_q/norm_k per head, no
RoPE (the model rotates video tokens only), attn_out, enc_gate; norm2 with its text modulation, the FF
(GELU-tanh), enc_gate_ff. The modulation comes from the block's `temb` (timestep, plus the ofs
embedding of 1.5 image-to-video), as the text's.
Concept tokens: the concept's own tokens in the T5-XXL states, through patch_embed.text_proj, as prompt
text (text gets no position embedding).
Token order: text first, then the video tokens frame by frame ((frames, h, w) of patches); image-to-video
and inpaint models take their condition latents as extra channels, not extra tokens.
Time: 1.0 patches single latent frames; 1.5 (patch_size_t = 2) pairs them, and ComfyUI pads an odd latent
length by one frame (circularly), so it has ceil(T / 2) token frames. The VAE decodes T latent frames to
4T - 3 pictures when T is odd (the usual 13 -> 49, 21 -> 81) and to 4T when T is even.
"""

from __future__ import annotations

import torch

from ..stream.block_hooks import BlockCall
from .base import ModelClass, ModelFamily, TextEncoder, TokenGrid
from .stream_kinds import SharedWeights, TextModules


def _text_modulated(norm_zero, x: torch.Tensor, temb: torch.Tensor):
    """A LayerNormZero's text rows for `x`: (norm(x) · (1 + enc_scale) + enc_shift, enc_gate [B, 1, C])."""
    _, _, _, enc_shift, enc_scale, enc_gate = norm_zero.linear(norm_zero.silu(temb)).chunk(6, dim=1)
    return norm_zero.norm(x) * (1 + enc_scale)[:, None, :] + enc_shift[:, None, :], enc_gate[:, None, :]


class CogVideoXBlocks(SharedWeights):
    """A CogVideoXBlock: shared q/k/v, norm_q/norm_k, attn_out and FF, with the text's share of each LayerNormZero.
    Text first in its joint attention, then the video."""

    label = "expert-adaLN"
    image_tokens = TextModules.image_tokens

    def qkv(self, block, concepts, block_args, forward):
        temb = forward.rows(block_args["vec"])
        x, gate = _text_modulated(block.norm1, concepts, temb)
        b, r = x.shape[0], x.shape[1]
        n, d = block.num_heads, block.head_dim
        q = block.norm_q(block.q(x).view(b, r, n, d)).transpose(1, 2)
        k = block.norm_k(block.k(x).view(b, r, n, d)).transpose(1, 2)
        v = block.v(x).view(b, r, n, d).transpose(1, 2)
        return (q, k, v), (gate, temb)

    def update(self, block, concepts, concept_out, saved):
        gate, temb = saved
        concepts = concepts + gate * block.attn_out(concept_out)
        x, gate_ff = _text_modulated(block.norm2, concepts, temb)
        ff = block.ff_out(torch.nn.functional.gelu(block.ff_proj(x), approximate="tanh"))
        return concepts + gate_ff * ff


class CogVideoXFamily(ModelFamily):
    name = "CogVideoX"
    variants = ("2B", "5B", "1.5 5B; text-to-video", "image-to-video (1.5 with `ofs`)", "Fun inpaint")
    model = ModelClass("comfy.ldm.cogvideo.model", "CogVideoXTransformer3DModel")
    encoders = (TextEncoder("t5xxl", "T5-XXL", "CLIPLoader, `cogvideox`"),)
    blocks = (CogVideoXBlocks("blocks", call=BlockCall(
        arguments={"img": "hidden_states", "txt": "encoder_hidden_states", "vec": "temb", "pe": "image_rotary_emb"},
        outputs=("img", "txt"))),)
    grid = TokenGrid("patch_size", time_patch="patch_size_t")
    video = True
    position = "none: the model positions video tokens only"
    modulation = ("text and video share every block weight; the concepts take the text share (`enc_shift/enc_scale/"
                  "enc_gate`) of each block's LayerNormZero on timestep (+ `ofs`), as the text's. Maps are `[batch, "
                  "concepts, frames, h, w]`, one frame per token frame (1.5 pairs latent frames)")
    test_ids = ("cogvideox",)
    runs_on_comfyui_0_3 = False

    def context_dim(self, diffusion_model):
        return diffusion_model.patch_embed.text_proj.in_features

    def pixel_frames(self, latent_frames, temporal_downscale):
        # CogVideoX's VAE doubles the frames at each of its log2(downscale) time-upsampling stages, except
        # that an odd count > 1 keeps its first frame single: 13 latent frames give 49, 2 give 8, 1 gives 1.
        frames, ratio = latent_frames, temporal_downscale
        while ratio > 1:
            frames = frames if frames == 1 else 2 * frames - (frames % 2)
            ratio //= 2
        return frames

    def initial_concepts(self, diffusion_model, embeddings):
        # As the model projects its text: through text_proj in float32, back to the stream's dtype. ComfyUI builds
        # the patch embedding in float32 whatever the model's dtype (dtype=torch.float32 in CogVideoXTransformer3DModel),
        # and the model casts its text to text_proj.weight.dtype; the pack never reads a weight (a GGUF or other
        # quantized weight is no plain tensor: GGUF's reports its packed storage's dtype), so it names that dtype.
        # (Where ComfyUI's mixed-precision ops hold text_proj in their compute dtype, the concepts are projected in
        # float32 from the same weights.)
        return diffusion_model.patch_embed.text_proj(embeddings.float()).to(embeddings.dtype)
