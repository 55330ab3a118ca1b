"""Reads a block's joint attention call: the image keys, values and outputs the block itself used.

Installed as ComfyUI's `optimized_attention_override` for one block call. It chains any
override that was already there, acts on the block's first (joint) attention call only
(SD3.5's MMDiT-X makes a second, image-only call) and never changes what the block gets back.
"""

from __future__ import annotations

import torch

from .concept_math import concept_attention, heads_to_flat, token_scores


def _heads_first(t: torch.Tensor, heads: int, skip_reshape: bool) -> torch.Tensor:
    """Attention inputs come as [B, H, L, D] (skip_reshape), [B, L, H*D] or SD3's v [B, L, H, D]."""
    if skip_reshape:
        return t
    return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)


class AttentionCapture:
    def __init__(self, forward, layer: int, concept_qkv, text_len: int, previous=None):
        self.forward = forward
        self.layer = layer
        self.concept_q, self.concept_k, self.concept_v = concept_qkv
        self.text_len = text_len
        self.previous = previous
        # No container_function: ComfyUI then hands this override plain tensors.
        self.concept_out: torch.Tensor | None = None

    def __call__(self, func, *args, **kwargs):
        if self.previous is not None:
            out = self.previous(func, *args, **kwargs)
        else:
            out = func(*args, **kwargs)
        if self.concept_out is None:
            self._read_joint_call(args, kwargs, out)
        return out

    def _read_joint_call(self, args, kwargs, out):
        fwd = self.forward
        q, k, v = args[:3]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        skip_reshape = kwargs.get("skip_reshape", False)
        k_heads = fwd.rows(_heads_first(k, heads, skip_reshape))
        v_heads = fwd.rows(_heads_first(v, heads, skip_reshape))
        # Main-image tokens only: text comes first, Kontext reference tokens after the image.
        image = slice(self.text_len, self.text_len + fwd.num_image_tokens)
        image_k, image_v = k_heads[:, :, image], v_heads[:, :, image]
        opts = fwd.options
        self.concept_out = concept_attention(
            self.concept_q, self.concept_k, self.concept_v, image_k, image_v,
            self_attention=opts.concept_self_attention, cross_attention=opts.concept_cross_attention,
        )
        if self.layer not in fwd.selected_layers:
            return
        if opts.space == "output":
            out_flat = heads_to_flat(out) if kwargs.get("skip_output_reshape", False) else out
            image_vectors, concept_vectors = fwd.rows(out_flat)[:, image], self.concept_out
        elif opts.space == "cross_attention":
            image_vectors, concept_vectors = heads_to_flat(image_k), heads_to_flat(self.concept_q)
        else:
            image_vectors, concept_vectors = heads_to_flat(image_v), heads_to_flat(self.concept_v)
        fwd.add_layer_scores(token_scores(image_vectors, concept_vectors, opts.softmax))
