"""Reads a block's joint attention call: the image keys, values and outputs the block itself used.

Installed as ComfyUI's `optimized_attention_override` for one block call. It chains any
override that was already there, acts on the block's first (joint) attention call only
(SD3.5's MMDiT-X makes a second, image-only call) and never changes what the block gets back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..maths.attention import concept_attention, dot_scores, head_dot_scores, heads_to_flat, to_map


def _per_head(t: torch.Tensor, head_dim: int, skip_reshape: bool) -> torch.Tensor:
    """A view with heads split: [B, H, L, D] as given (skip_reshape), else [B, L, H, D].

    Split by the head width, not the query's head count: with grouped-query attention (enable_gqa)
    keys and values have fewer heads than the queries.
    """
    if skip_reshape:
        return t
    return t.view(t.shape[0], t.shape[1], -1, head_dim)


class AttentionCapture:
    def __init__(self, forward, layer: tuple, concept_qkv, image: slice, previous=None, side=None):
        self.forward = forward
        self.layer = layer
        self.concept_q, self.concept_k, self.concept_v = concept_qkv
        self.image = image  # the main image's tokens in the joint sequence
        self.side = side or {}  # other token groups this layer also scores (StreamKind.side_tokens)
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
        heads_first = kwargs.get("skip_reshape", False)
        # Main-image tokens only: no text, no reference tokens (the family knows the layout).
        image = self.image
        head_dim = q.shape[-1] if heads_first else q.shape[-1] // heads
        k_rows = fwd.rows(_per_head(k, head_dim, heads_first))
        v_rows = fwd.rows(_per_head(v, head_dim, heads_first))
        out_rows = None
        if fwd.recorder is not None or (self.layer in fwd.selected_layers and fwd.options.space == "output"):
            out_rows = fwd.rows(heads_to_flat(out) if kwargs.get("skip_output_reshape", False) else out)

        def stream_of(tokens):
            return ImageStream(
                image_k=k_rows[:, :, tokens] if heads_first else k_rows[:, tokens],
                image_v=v_rows[:, :, tokens] if heads_first else v_rows[:, tokens],
                image_out=None if out_rows is None else out_rows[:, tokens],
                tokens_first=not heads_first,
            )

        view = stream_of(image)
        if fwd.recorder is not None:
            # Kept for re-queries: copies, and this run reads the same copies so both give equal maps.
            view = fwd.recorder.keep(self.layer, view)
        self.concept_out = read_image_stream(fwd, self.layer, (self.concept_q, self.concept_k, self.concept_v), view)
        for name, tokens in self.side.items():
            side_view = stream_of(tokens)
            if fwd.recorder is not None:
                side_view = fwd.recorder.keep(self.layer, side_view, side=name)
            if self.layer in fwd.selected_layers:
                fwd.add_side_scores(name, layer_map(fwd.options, side_view, self.concept_q, self.concept_v,
                                                    self.concept_out))


@dataclass
class ImageStream:
    """What the concept stream reads from one block's joint attention call: the main image's keys and values
    as the attention got them ([B, H, n, D] heads-first, or [B, n, H, D] tokens-first) and its output [B, n, H*D]
    (None where nobody reads it: an unselected block, or another space, when nothing is recorded)."""

    image_k: torch.Tensor
    image_v: torch.Tensor
    image_out: torch.Tensor
    tokens_first: bool


def read_image_stream(forward, layer: tuple, concept_qkv, view: ImageStream) -> torch.Tensor:
    """The concepts' attention output o_c for one block, adding the block's map to the forward when its layer is
    selected. The same for a live block call and for a re-query over a kept image stream."""
    opts = forward.options
    concept_q, concept_k, concept_v = concept_qkv
    concept_out = concept_attention(
        concept_q, concept_k, concept_v, view.image_k, view.image_v,
        self_attention=opts.concept_self_attention, cross_attention=opts.concept_cross_attention,
        tokens_first=view.tokens_first,
    )
    if layer in forward.selected_layers:
        forward.add_layer_scores(layer_map(opts, view, concept_q, concept_v, concept_out))
    return concept_out


def layer_map(opts, view: ImageStream, concept_q, concept_v, concept_out) -> torch.Tensor:
    """One layer's map [B, n, r] of a token group against the concepts, in the options' space."""
    if opts.space == "output":
        scores = dot_scores(view.image_out, concept_out)
    elif opts.space == "cross_attention":
        scores = head_dot_scores(view.image_k, concept_q, view.tokens_first, heads=concept_q.shape[1])
    else:
        scores = head_dot_scores(view.image_v, concept_v, view.tokens_first, heads=concept_q.shape[1])
    return to_map(scores, opts.layer_softmax, opts.softmax_temperature)
