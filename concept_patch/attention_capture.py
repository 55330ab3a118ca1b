"""Reads a block's joint attention call: the image keys, values and outputs the block itself used.

Installed as ComfyUI's `optimized_attention_override` for one block call. It chains any
override that was already there, acts on the block's first (joint) attention call only
(SD3.5's MMDiT-X makes a second, image-only call) and never changes what the block gets back.
"""

from __future__ import annotations

import torch

from .concept_math import concept_attention, dot_scores, head_dot_scores, heads_to_flat, to_map


def _per_head(t: torch.Tensor, heads: int, skip_reshape: bool) -> torch.Tensor:
    """A view with heads split: [B, H, L, D] as given (skip_reshape), else [B, L, H, D]."""
    if skip_reshape:
        return t
    return t.view(t.shape[0], t.shape[1], heads, -1)


class AttentionCapture:
    def __init__(self, forward, layer: int, concept_qkv, image: slice, previous=None):
        self.forward = forward
        self.layer = layer
        self.concept_q, self.concept_k, self.concept_v = concept_qkv
        self.image = image  # the main image's tokens in the joint sequence
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
        opts = fwd.options
        q, k, v = args[:3]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        heads_first = kwargs.get("skip_reshape", False)
        # Main-image tokens only: no text, no reference tokens (the family knows the layout).
        image = self.image
        k_rows = fwd.rows(_per_head(k, heads, heads_first))
        v_rows = fwd.rows(_per_head(v, heads, heads_first))
        image_k = k_rows[:, :, image] if heads_first else k_rows[:, image]
        image_v = v_rows[:, :, image] if heads_first else v_rows[:, image]
        self.concept_out = concept_attention(
            self.concept_q, self.concept_k, self.concept_v, image_k, image_v,
            self_attention=opts.concept_self_attention, cross_attention=opts.concept_cross_attention,
            tokens_first=not heads_first,
        )
        if self.layer not in fwd.selected_layers:
            return
        if opts.space == "output":
            out_flat = heads_to_flat(out) if kwargs.get("skip_output_reshape", False) else out
            scores = dot_scores(fwd.rows(out_flat)[:, image], self.concept_out)
        elif opts.space == "cross_attention":
            scores = head_dot_scores(image_k, self.concept_q, tokens_first=not heads_first)
        else:
            scores = head_dot_scores(image_v, self.concept_v, tokens_first=not heads_first)
        fwd.add_layer_scores(to_map(scores, opts.softmax))
