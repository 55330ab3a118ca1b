"""HiDream-I1 and E1: comfy's HiDreamImageTransformer2DModel, 16 dual-stream blocks ComfyUI calls with no dit hook.

Hook: an object patch on each block's forward offers the call to the dit replace patches
(stream/block_hooks.py), so the concept stream rides along as on hooked models.
Concept tokens: the concept's own tokens in the T5-XXL states (HiDream's `context`), through the T5
branch of the caption projection (caption_projection[-1]), the projection the model gives the T5 part
of its text stream. HiDream's text stream is [T5 ; Llama-3.1 layer 31] carried from block to block,
plus a fresh Llama layer appended for each block; the concepts take no Llama states (they attend to
the image and to each other only). So concepts need the T5-XXL encoder loaded; CLIP-L/G and Llama
may be missing (CLIP only feeds the pooled vector, in the modulation).
Positions: text ids are zero (RoPE leaves text, and the concepts, unrotated).
Modulation: the block's text share (chunks 6-11 of its 12-way adaLN) of the block's own adaln_input
(timestep + pooled CLIP), exactly as the text stream gets it. Text q/k are RMS-normed over the full
width before the head split, as the block does.
Single-stream blocks (selected by "single ..." layers, an extension beyond the paper): object-patched the same
way; the concepts take their shared modules and their one modulation, the mixture-of-experts feed-forward included.
Token order: image first. E1 concatenates the condition picture to the right of the image along the
width; the maps cover the generated picture's columns only.
"""

from __future__ import annotations

import torch

from ..stream.block_hooks import BlockCall
from ..stream.options import SINGLE_BLOCK
from .base import ModelClass, ModelFamily, TextEncoder, TokenGrid
from .modulation import gated_update, modulated_layer_norm, split_modulation
from .stream_kinds import SharedWeights, TextModules


class HiDreamDualBlocks(TextModules):
    """The text modules of a dual-stream block: norm1_t with the text's six adaLN chunks, attn1's *_t
    projections and RMS norms, to_out_t, norm3_t and ff_t. Image first; E1's condition picture beside it."""

    def image_tokens(self, block_args, forward):
        h, w = forward.grid
        total = block_args["img"].shape[1]
        if total == h * w:
            return slice(0, h * w)
        # E1: rows of the picture and the condition picture side by side; keep the picture's columns.
        width = total // h

        def build():
            rows = torch.arange(h, device=forward.device)[:, None] * width
            return (rows + torch.arange(w, device=forward.device)[None, :]).reshape(-1)

        return forward.session.cached(("image_columns", h, w, width), forward.device, build)

    def qkv(self, block, concepts, block_args, forward):
        def text_modulation():
            modulation = block.adaLN_modulation(forward.rows(block_args["vec"]))
            return split_modulation(modulation[:, modulation.shape[1] // 2:], 6)  # the text stream's six

        mod = forward.block_constant("text_modulation", text_modulation)
        x = modulated_layer_norm(concepts, mod[0], mod[1], block.norm1_t.eps)
        attn = block.attn1
        qkv = _heads(x, attn.heads, (attn.to_q_t, attn.q_rms_norm_t), (attn.to_k_t, attn.k_rms_norm_t), attn.to_v_t)
        return qkv, mod

    def update(self, block, concepts, concept_out, saved):
        return _update(concepts, block.attn1.to_out_t(concept_out), saved, block.norm3_t, block.ff_t)


class HiDreamSingleBlocks(SharedWeights):
    """A single-stream block: the joint sequence [image ; carried text ; this block's Llama layer] through one set
    of modules with one modulation (the block's six chunks of adaln_input). The concepts take them all, the
    feed-forward (a mixture of experts, routed per token) included."""

    def qkv(self, block, concepts, block_args, forward):
        mod = split_modulation(block.adaLN_modulation(forward.rows(block_args["vec"])), 6)
        x = modulated_layer_norm(concepts, mod[0], mod[1], block.norm1_i.eps)
        attn = block.attn1
        return _heads(x, attn.heads, (attn.to_q, attn.q_rms_norm), (attn.to_k, attn.k_rms_norm), attn.to_v), mod

    def update(self, block, concepts, concept_out, saved):
        return _update(concepts, block.attn1.to_out(concept_out), saved, block.norm3_i, block.ff_i)


class HiDreamFamily(ModelFamily):
    name = "HiDream-I1/E1"
    variants = ("HiDream-I1 (full, dev, fast)", "HiDream-E1")
    model = ModelClass("comfy.ldm.hidream.model", "HiDreamImageTransformer2DModel")
    encoders = (TextEncoder("t5xxl", "T5-XXL", "QuadrupleCLIPLoader", note="from HiDream's four encoders; CLIP-L/G and "
                            "Llama may be missing, T5-XXL is needed for concepts"),)
    blocks = (
        HiDreamDualBlocks("double_stream_blocks", inner="block", call=BlockCall(
            arguments={"img": "image_tokens", "txt": "text_tokens", "vec": "adaln_input"}, outputs=("img", "txt"))),
        HiDreamSingleBlocks("single_stream_blocks", inner="block", hook=SINGLE_BLOCK, call=BlockCall(
            arguments={"img": "image_tokens", "vec": "adaln_input"}, outputs=("img",))),
    )
    grid = TokenGrid("patch_size")
    position = "zero ids, as its text has"
    modulation = "the block's text share (chunks 6-11 of its adaLN) of timestep + pooled CLIP, as the text's"
    runs_on_comfyui_0_3 = True

    def context_dim(self, diffusion_model):
        return diffusion_model.caption_projection[-1].linear.in_features

    def initial_concepts(self, diffusion_model, embeddings):
        return diffusion_model.caption_projection[-1](embeddings)


def _heads(x, heads, query, key, value):
    """Heads-first q, k, v [B, H, r, D]: q and k RMS-normed over the full width before the head split, as the
    block does. query/key: (projection, norm); value: projection."""
    b, r = x.shape[0], x.shape[1]

    def split(t):
        return t.view(b, r, heads, -1).transpose(1, 2)

    return (split(query[1](query[0](x)).to(x.dtype)), split(key[1](key[0](x)).to(x.dtype)), split(value(x)))


def _update(concepts, attention_out, saved, norm, feed_forward):
    """The gated residual updates of a block: attention output (already projected), then the feed-forward."""
    return gated_update(concepts, attention_out, saved, norm.eps, feed_forward)
