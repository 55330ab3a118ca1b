"""Krea 2 (K2): comfy's krea2 SingleStreamDiT, single-stream with grouped-query, sigmoid-gated attention.

Shared-weight extension (single_stream.py, stream_kinds.SharedWeights): every token shares each block's weights, so the
concepts go through the block's own modules as the text rows do. The user's layers index the model's `blocks`.

Concept tokens: the concept's own tokens in the 12-layer Qwen3-VL-4B stack the model reads (its
`context`, 12 x 2560 wide), through `txtfusion` (per-token fusion over the 12 layers, then its refiner
blocks, over a caption of the concepts alone: one caption of all concepts when concept self-attention is
on, else one caption per concept) and `txtmlp`. This preprocessing does not depend on the timestep: it
runs once per run.
Positions: text ids are zero, so RoPE leaves text rows, and the concepts, unrotated.
Modulation: the block's shared modulation of the timestep vector (with timestep-0 references, the text
rows read the real timestep's rows, the first half of the doubled batch).
Gated output: a block's attention output is `wo(attn · sigmoid(gate(x)))`. The maps compare the attention
outputs *before* the sigmoid gate, for the image tokens (what the attention call returns) and for the
concepts alike; the concept residual update then applies the gate, wo and the block's gates, as the text
rows get them.
Token order: [text ; picture ; reference pictures]; the maps cover the picture's tokens only.
"""

from __future__ import annotations

import torch

from ..maths.attention import repeat_heads
from ..stream.block_hooks import BlockCall
from .base import ModelClass, TextEncoder, TokenGrid
from .single_stream import SingleStreamFamily, from_caption, text_rows
from .stream_kinds import SharedWeights


class Krea2Blocks(SharedWeights):
    """A Krea 2 block: shared modulation, grouped-query attention with a sigmoid output gate, MLP."""

    def image_tokens(self, block_args, forward):
        # The model records where the text ends: [text ; picture ; references].
        start = block_args["transformer_options"]["img_slice"][0]
        return slice(start, start + forward.num_image_tokens)

    def qkv(self, block, concepts, block_args, forward):
        # With timestep-0 references the modulation batch is [timestep ; timestep 0]: text reads the first half.
        references = block_args.get("timestep_zero_index") is not None
        vec = text_rows(block_args["vec"], block_args["img"].shape[0], forward, 0 if references else None)
        prescale, preshift, pregate, postscale, postshift, postgate = block.mod(vec)
        x = (1 + prescale) * block.prenorm(concepts) + preshift
        attn = block.attn
        b, r = x.shape[0], x.shape[1]
        q = attn.wq(x).view(b, r, attn.heads, -1).transpose(1, 2)
        k = attn.wk(x).view(b, r, attn.kvheads, -1).transpose(1, 2)
        v = attn.wv(x).view(b, r, attn.kvheads, -1).transpose(1, 2)
        q, k = attn.qknorm(q, k)
        # Zero text ids: RoPE is the identity on text rows, so it is not applied.
        qkv = (q, repeat_heads(k, attn.heads), repeat_heads(v, attn.heads))
        return qkv, (x, pregate, postscale, postshift, postgate)

    def update(self, block, concepts, concept_out, saved):
        x, pregate, postscale, postshift, postgate = saved
        attn = block.attn
        gated = attn.wo(concept_out * torch.sigmoid(attn.gate(x)))
        concepts = concepts + pregate * gated
        return concepts + postgate * block.mlp((1 + postscale) * block.postnorm(concepts) + postshift)


class Krea2Family(SingleStreamFamily):
    name = "Krea 2"
    variants = ("Krea 2",)
    model = ModelClass("comfy.ldm.krea2.model", "SingleStreamDiT")
    encoders = (TextEncoder("qwen3vl_4b", "Qwen3-VL 4B", "CLIPLoader, `krea2`", note="12 tapped layers"),)
    blocks = (Krea2Blocks("blocks", call=BlockCall(
        arguments={"img": "x", "vec": "vec", "timestep_zero_index": "timestep_zero_index"}, outputs=("img",))),)
    grid = TokenGrid("patch")
    position = "zero ids, as its text has"
    modulation = "the block's shared modulation of the timestep, the text's rows (timestep-0 references read the other rows)"
    test_ids = ("krea",)
    runs_on_comfyui_0_3 = False

    def context_dim(self, diffusion_model):
        return diffusion_model.txtlayers * diffusion_model.txtdim

    def preprocess_concepts(self, diffusion_model, embeddings, forward):
        dm = diffusion_model
        together = forward.options.concept_self_attention
        stack = embeddings.reshape(1, embeddings.shape[0], dm.txtlayers, dm.txtdim)  # [1, r, layers, width]
        if not together:
            stack = stack.movedim(0, 1)  # r captions of one token
        fused = dm.txtfusion(stack, mask=None, transformer_options={})
        return from_caption(dm.txtmlp(fused), together)
