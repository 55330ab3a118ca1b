"""Reads a cross-attention layer's text call: the picture's queries and attention outputs, as the layer computed
them, for the maps of maths/cross_attention.py.

Installed as ComfyUI's `optimized_attention_override` for one block call, as AttentionCapture is for joint
attention. A cross-attention block makes several attention calls (its self-attention, then, in Wan's image-to-
video blocks, one over the CLIP-vision image tokens, then the one over the text); the stream kind says which call
is the text's (CrossAttention.text_call), and only that one is read. The override chains any override already
there and hands back what the call gave: the picture is unchanged.
"""

from __future__ import annotations

import torch

from ..checks.errors import ConceptAttentionError
from ..maths.attention import to_map
from ..maths.cross_attention import cross_attention_scores, output_space_scores
from .attention_capture import ImageStream


class CrossAttentionCapture:
    def __init__(self, forward, layer: tuple, concept_k, image: slice, text_call: int, previous=None):
        self.forward = forward
        self.layer = layer
        self.concept_k = concept_k  # [Bc, r, H*D], or None where this block's scores are not needed
        self.image = image  # the main picture's tokens among the queries
        self.text_call = text_call  # which of the block's attention calls is the text's (0-based)
        self.previous = previous
        self.calls = 0
        # Set once the text call was seen (the concepts themselves: a cross-attention layer leaves them unchanged).
        self.concept_out: torch.Tensor | None = None

    def __call__(self, func, *args, **kwargs):
        out = self.previous(func, *args, **kwargs) if self.previous is not None else func(*args, **kwargs)
        if self.calls == self.text_call:
            self._read_text_call(args, kwargs, out)
        self.calls += 1
        return out

    def _read_text_call(self, args, kwargs, out):
        fwd = self.forward
        self.concept_out = fwd.concepts
        if self.concept_k is None:
            return
        if kwargs.get("skip_reshape", False) or kwargs.get("skip_output_reshape", False):
            raise ConceptAttentionError("this cross-attention layer's text call does not have the tokens-first layout "
                                        "the pack reads; the model is not one the pack knows")
        q = args[0]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        view = ImageStream(image_k=fwd.rows(q)[:, self.image], image_v=q.new_empty(0),
                           image_out=fwd.rows(out)[:, self.image], tokens_first=True)
        if fwd.recorder is not None:
            view = fwd.recorder.keep(self.layer, view)
        read_cross_attention(fwd, self.layer, self.concept_k, view, heads)


def read_cross_attention(forward, layer: tuple, concept_k: torch.Tensor, view: ImageStream, heads: int) -> None:
    """Adds a selected layer's map [Bc, n, r] to the forward, in the options' space. The same for a live block call
    and for a re-query over a kept image stream (ImageStream: image_k holds the picture's queries, image_out its
    outputs of the text call, image_v is empty)."""
    if layer not in forward.selected_layers:
        return
    opts = forward.options
    if opts.space == "output":
        scores = output_space_scores(view.image_k, concept_k, view.image_out, heads)
    else:
        scores = cross_attention_scores(view.image_k, concept_k, heads)
    forward.add_layer_scores(to_map(scores, opts.layer_softmax, opts.softmax_temperature))
