"""Z-Image (Turbo, Base, Omni) and Lumina 2 (also NetaYume Lumina and NewBie): comfy's NextDiT, single-stream.

Shared-weight extension (single_stream.py, stream_kinds.SharedWeights): every token shares each block's weights, so the
concepts go through the block's own modules as the caption rows do. The user's layers index the main `layers`
(not the noise / context refiners).

Concept tokens: the concept's own tokens in the text encoder's states (Z-Image: Qwen3-4B; Lumina 2 and
NetaYume: Gemma-2-2B; NewBie: Gemma-3-4B), through `cap_embedder` and the `context_refiner` blocks, as a
caption of the concepts alone (one caption of all concepts when concept self-attention is on, else one
caption per concept). No caption pad tokens: Z-Image pads captions to a multiple of 32 only to keep
sequence lengths aligned. This preprocessing does not depend on the timestep: it runs once per run.
Positions: the model numbers caption tokens 1, 2, ... on its first RoPE axis (the others are 0); a concept
takes 1 + the position its tokens had in its own conditioning (Omni: as in a call without references).
Modulation: the block's adaLN of its own adaln_input, as the caption rows get it (Omni: the rows of the
real timestep, which the main caption reads; references read the timestep-0 rows). Each block is
`x + tanh(g₁)·norm₂(attn(norm₁(x)·(1+s₁)))`, then the same with the MLP (sandwich norms, tanh gates, fp16
clamps); q/k are RMS-normed and roped by the model's own fused function, and the grouped keys/values
repeated to every query head as the model repeats them.
Token order: [caption (padded) ; (Omni: SigLIP and reference pictures) ; picture ; picture pad tokens];
the maps cover the picture's tokens only.
"""

from __future__ import annotations

import torch

from ..maths.attention import repeat_heads
from ..stream.block_hooks import BlockCall
from .base import ModelClass, TextEncoder, TokenGrid
from .single_stream import SingleStreamFamily, as_caption, from_caption, text_rows
from .stream_kinds import SharedWeights


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    """As the blocks clamp attention and MLP outputs in fp16."""
    if x.dtype == torch.float16:
        return torch.nan_to_num(x, nan=0.0, posinf=65504, neginf=-65504)
    return x


def normed_roped_qk(attention, q: torch.Tensor, k: torch.Tensor, freqs_cis: torch.Tensor):
    """q [B, L, H, D] and k [B, L, H_kv, D] through a JointAttention's q/k RMS norms and RoPE, with the
    model's own functions and branches (the fused rms_rope kernels at inference)."""
    import comfy.model_management
    import comfy.ops
    import comfy.quant_ops
    from comfy.ldm.flux.math import apply_rope

    if attention.qk_norm and not comfy.model_management.in_training:
        q_scale, _, q_stream = comfy.ops.cast_bias_weight(attention.q_norm, q, offloadable=True)
        k_scale, _, k_stream = comfy.ops.cast_bias_weight(attention.k_norm, k, offloadable=True)
        eps = attention.q_norm.eps if attention.q_norm.eps is not None else torch.finfo(torch.float32).eps
        if attention.n_local_heads == attention.n_local_kv_heads:
            q, k = comfy.quant_ops.ck.rms_rope(q, k, freqs_cis, q_scale, k_scale, eps)
        else:
            q = comfy.quant_ops.ck.rms_rope1(q, freqs_cis, q_scale, eps)
            k = comfy.quant_ops.ck.rms_rope1(k, freqs_cis, k_scale, eps)
        comfy.ops.uncast_bias_weight(attention.q_norm, q_scale, None, q_stream)
        comfy.ops.uncast_bias_weight(attention.k_norm, k_scale, None, k_stream)
        return q, k
    return apply_rope(attention.q_norm(q), attention.k_norm(k), freqs_cis)


def attention_qkv(attention, x: torch.Tensor, freqs_cis: torch.Tensor):
    """Heads-first q, k, v [B, H, L, D] of rows x through a JointAttention, keys and values repeated to every
    query head (as the model hands them to its attention call)."""
    b, length, _ = x.shape
    heads, kv_heads, d = attention.n_local_heads, attention.n_local_kv_heads, attention.head_dim
    q, k, v = torch.split(attention.qkv(x), [heads * d, kv_heads * d, kv_heads * d], dim=-1)
    q, k = normed_roped_qk(attention, q.view(b, length, heads, d), k.view(b, length, kv_heads, d), freqs_cis)
    v = v.view(b, length, kv_heads, d)
    return q.movedim(1, 2), repeat_heads(k.movedim(1, 2), heads), repeat_heads(v.movedim(1, 2), heads)


class NextDiTLayers(SharedWeights):
    """A JointTransformerBlock: sandwich norms, tanh gates, the caption rows' modulation."""

    def image_tokens(self, block_args, forward):
        # The picture comes last, followed by its pad tokens (Z-Image pads it to a multiple of 32).
        n = forward.num_image_tokens
        multiple = getattr(forward.diffusion_model, "pad_tokens_multiple", None)
        padded = n + ((-n) % multiple if multiple else 0)
        start = block_args["img"].shape[1] - padded
        return slice(start, start + n)

    def qkv(self, block, concepts, block_args, forward):
        # Omni doubles the modulation batch, [timestep 0 ; timestep]: captions read the second half.
        omni = block_args.get("timestep_zero_index") is not None
        vec = text_rows(block_args["vec"], block_args["img"].shape[0], forward, 1 if omni else None)
        scale_msa, gate_msa, scale_mlp, gate_mlp = block.adaLN_modulation(vec).chunk(4, dim=1)
        x = block.attention_norm1(concepts) * (1 + scale_msa.unsqueeze(1))
        qkv = attention_qkv(block.attention, x, forward.family.concept_rope(forward, block_args))
        return qkv, (gate_msa, scale_mlp, gate_mlp)

    def update(self, block, concepts, concept_out, saved):
        gate_msa, scale_mlp, gate_mlp = saved
        attn = block.attention_norm2(_clamp_fp16(block.attention.out(concept_out)))
        concepts = concepts + gate_msa.unsqueeze(1).tanh() * attn
        mlp_in = block.ffn_norm1(concepts) * (1 + scale_mlp.unsqueeze(1))
        mlp = block.ffn_norm2(_clamp_fp16(block.feed_forward(mlp_in)))
        return concepts + gate_mlp.unsqueeze(1).tanh() * mlp


NEXTDIT_POSITION = ("RoPE axis 0 at 1 + the concept's own tokens' index in its conditioning, as the caption's tokens "
                    "are numbered")


class LuminaFamily(SingleStreamFamily):
    name = "Lumina 2"
    variants = ("Lumina-Image 2.0", "NetaYume Lumina", "NewBie")
    model = ModelClass("comfy.ldm.lumina.model", "NextDiT")
    encoders = (
        TextEncoder("gemma2_2b", "Gemma 2 2B", "CLIPLoader, `lumina2`", file="gemma_2_2b"),
        TextEncoder("gemma3_4b", "Gemma 3 4B", "CLIPLoader, `lumina2`"),
        # NewBie's Gemma-3-4B beside Jina CLIP
        TextEncoder("gemma", "Gemma 3 4B", "DualCLIPLoader, `newbie`", variant="NewBie",
                    note="with Jina CLIP; concepts from the Gemma part"),
    )
    blocks = (NextDiTLayers("layers", call=BlockCall(
        arguments={"img": "x", "vec": "adaln_input", "timestep_zero_index": "timestep_zero_index"}, outputs=("img",))),)
    grid = TokenGrid("patch_size")
    position = NEXTDIT_POSITION
    modulation = "as Z-Image (NewBie: timestep + pooled CLIP, the block's `adaln_input`)"
    test_ids = ("lumina", "newbie", "neta")
    runs_on_comfyui_0_3 = False

    def is_variant(self, diffusion_model):
        return not is_z_image(diffusion_model)

    def context_dim(self, diffusion_model):
        return diffusion_model.cap_embedder[1].in_features

    def concept_rope(self, forward, block_args):
        """The concepts' RoPE table in the layout the blocks use ([1, r, 1, D/2, 2, 2]): caption positions."""
        diffusion_model = forward.diffusion_model

        def build():
            positions = forward.session.concepts.positions
            r = forward.session.concepts.embeddings.shape[0]
            if positions is None:
                positions = torch.arange(r, dtype=torch.float32)
            # Built on the device (a re-query's CUDA graph has its concept positions there: no host copy).
            ids = torch.zeros((1, r, len(diffusion_model.axes_dims)), dtype=torch.float32, device=forward.device)
            ids[0, :, 0] = positions.to(forward.device, torch.float32) + 1.0
            return diffusion_model.rope_embedder(ids).movedim(1, 2)

        return forward.session.cached(("lumina_concept_rope",), forward.device, build)

    def preprocess_concepts(self, diffusion_model, embeddings, forward):
        together = forward.options.concept_self_attention
        rope = self.concept_rope(forward, {})
        captions = as_caption(diffusion_model.cap_embedder(embeddings), together)
        freqs = rope if together else rope.movedim(0, 1)  # one position per one-token caption
        for layer in diffusion_model.context_refiner:
            captions = layer(captions, None, freqs, transformer_options={})
        return from_caption(captions, together)


def is_z_image(diffusion_model) -> bool:
    """Z-Image's NextDiT: the blocks' adaLN is one Linear on a 256-wide timestep vector (Lumina 2: SiLU, Linear)."""
    layers = getattr(diffusion_model, "layers", None)
    if not layers:
        return False
    modulation = getattr(layers[0], "adaLN_modulation", None)
    return modulation is not None and not isinstance(modulation[0], torch.nn.SiLU)


class ZImageFamily(LuminaFamily):
    name = "Z-Image"
    variants = ("Turbo", "Base", "Omni")
    encoders = (TextEncoder("qwen3_4b", "Qwen3 4B", "CLIPLoader, `lumina2`", file="qwen_3_4b"),)
    position = NEXTDIT_POSITION
    modulation = ("the block's adaLN of the timestep, as the caption's (Omni: the real timestep's rows, not the "
                  "references' timestep-0 rows)")
    test_ids = ("z_image", "zimage")
    runs_on_comfyui_0_3 = False

    def is_variant(self, diffusion_model):
        return is_z_image(diffusion_model)
