"""CogVideoX (2B, 5B, 1.5; text-to-video, image-to-video, Fun inpaint): comfy's CogVideoXTransformer3DModel.

Blocks: CogVideoXBlock, called by the model with no dit hook; an object patch on each block's forward
offers the call to the dit replace patches (block_hooks.py), as for HiDream.
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
from .base import DualStreamFamily, is_instance_of


def _text_modulated(norm_zero, x: torch.Tensor, temb: torch.Tensor):
    """A LayerNormZero's text rows for `x`: (norm(x) · (1 + enc_scale) + enc_shift, enc_gate [B, 1, C])."""
    _, _, _, enc_shift, enc_scale, enc_gate = norm_zero.linear(norm_zero.silu(temb)).chunk(6, dim=1)
    return norm_zero.norm(x) * (1 + enc_scale)[:, None, :] + enc_shift[:, None, :], enc_gate[:, None, :]


class CogVideoXFamily(DualStreamFamily):
    name = "CogVideoX"
    text_spaces = ("t5xxl",)
    forward_wrapper_type = "apply_model"
    block_call = BlockCall(
        blocks="blocks",
        arguments={"img": "hidden_states", "txt": "encoder_hidden_states", "vec": "temb", "pe": "image_rotary_emb"},
        outputs=("img", "txt"),
    )

    def matches(self, diffusion_model):
        return is_instance_of(diffusion_model, "comfy.ldm.cogvideo.model", "CogVideoXTransformer3DModel")

    def num_blocks(self, diffusion_model):
        return len(diffusion_model.blocks)

    def block(self, diffusion_model, index):
        return diffusion_model.blocks[index]

    def context_dim(self, diffusion_model):
        return diffusion_model.patch_embed.text_proj.in_features

    def token_grid(self, diffusion_model, latent_hw):
        p = diffusion_model.patch_size
        h, w = latent_hw
        return (-(-h // p), -(-w // p))

    def token_frames(self, diffusion_model, latent_frames):
        p_t = diffusion_model.patch_size_t or 1
        return -(-latent_frames // p_t)

    def pixel_frames(self, latent_frames, temporal_downscale):
        # CogVideoX's VAE doubles the frames at each of its log2(downscale) time-upsampling stages, except
        # that an odd count > 1 keeps its first frame single: 13 latent frames give 49, 2 give 8, 1 gives 1.
        frames, ratio = latent_frames, temporal_downscale
        while ratio > 1:
            frames = frames if frames == 1 else 2 * frames - (frames % 2)
            ratio //= 2
        return frames

    def initial_concepts(self, diffusion_model, embeddings):
        # As the model projects its text: in text_proj's own dtype, back to the stream's.
        text_proj = diffusion_model.patch_embed.text_proj
        return text_proj(embeddings.to(text_proj.weight.dtype)).to(embeddings.dtype)

    def concept_qkv(self, block, concepts, block_args, forward):
        temb = forward.rows(block_args["vec"])
        x, gate = _text_modulated(block.norm1, concepts, temb)
        b, r = x.shape[0], x.shape[1]
        n, d = block.num_heads, block.head_dim
        q = block.norm_q(block.q(x).view(b, r, n, d)).transpose(1, 2)
        k = block.norm_k(block.k(x).view(b, r, n, d)).transpose(1, 2)
        v = block.v(x).view(b, r, n, d).transpose(1, 2)
        return (q, k, v), (gate, temb)

    def update_concepts(self, block, concepts, concept_out, saved):
        gate, temb = saved
        concepts = concepts + gate * block.attn_out(concept_out)
        x, gate_ff = _text_modulated(block.norm2, concepts, temb)
        ff = block.ff_out(torch.nn.functional.gelu(block.ff_proj(x), approximate="tanh"))
        return concepts + gate_ff * ff
