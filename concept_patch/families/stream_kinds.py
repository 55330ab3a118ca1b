"""Stream kinds: how concept rows pass one list of a model's blocks.

A family composes one stream-kind object per block list it reads (Flux: its double blocks, and its single blocks
for the opt-in 'single' layers; Z-Image: its layers). The kind says where the blocks are, how ComfyUI reaches them
(the dit hook name, or how to give blocks ComfyUI calls directly a hook) and what messages call them; the
family's subclass of it holds that block's maths:

* qkv: the concepts' q, k, v (heads-first [Bc, H, r, D]) through the block's modules, plus what update needs;
* update: the concept residual after the block, from the concepts' attention output [Bc, r, H*D];
* image_tokens: where the main picture's tokens sit in the block's attention sequence.

Three kinds exist. TextModules: dual-stream (MM-attention) blocks whose text has modules of its own, the paper's
method. SharedWeights: blocks where text and picture share every weight; the concepts take the modules with the
modulation the text rows get (the paper's method where the text has a modulation of its own, e.g. CogVideoX's
expert adaLN; otherwise an extension beyond the paper). Either way the concepts attend in an attention of their
own over the block's image keys and values: nobody attends to them, so the picture is unchanged. CrossAttention:
blocks whose text enters by cross-attention only (Wan): the text never attends to the picture, so there is no
concept stream through the blocks; each selected layer scores the concepts' keys (through the layer's own key
projection and norm) against the picture's queries and attention outputs (maths/cross_attention.py), in the
paper's cross-attention baseline or the output-space extension.

How a kind reads a block's attention is its own (capture, read_recorded), as are the spaces it has maps in
(spaces) and the choices it refuses (refusal): the shared per-block machinery (stream/forward_state.py) asks the
kind, never the family's name.
"""

from __future__ import annotations

import operator

import torch

from ..stream.attention_capture import AttentionCapture, layer_map, read_image_stream
from ..stream.block_hooks import BlockCall
from ..stream.cross_capture import CrossAttentionCapture, read_cross_attention
from ..stream.options import DOUBLE_BLOCK, SPACES


def attribute(obj, path: str):
    """obj.a.b[2] for path "a.b[2]" (dots and integer indices)."""
    for part in path.split("."):
        name, _, index = part.partition("[")
        if name:
            obj = getattr(obj, name)
        if index:
            obj = operator.getitem(obj, int(index.rstrip("]")))
    return obj


class StreamKind:
    """One list of blocks the concept stream passes, and how it passes them.

    blocks: attribute path of the block list under the diffusion model ("double_blocks").
    hook:   ComfyUI's dit replace-patch kind for these blocks ("double_block"; "single_block" for the second
            list of a hybrid model). Plain layer numbers select the first list a family declares, 'single ...'
            parts the second.
    call:   how the model calls these blocks where ComfyUI gives them no dit hook (stream.block_hooks), else None.
    inner:  attribute of each list entry that is the block itself (HiDream wraps its blocks), else None.
    """

    #: What messages call these blocks.
    label = ""
    #: The spaces (SaliencyOptions.space) these blocks have maps in.
    spaces: tuple[str, ...] = SPACES

    def __init__(self, blocks: str, *, hook: str = DOUBLE_BLOCK, call: BlockCall | None = None,
                 inner: str | None = None):
        self.blocks = blocks
        self.hook = hook
        self.call = call
        self.inner = inner

    def count(self, diffusion_model: torch.nn.Module) -> int:
        return len(attribute(diffusion_model, self.blocks))

    def block(self, diffusion_model: torch.nn.Module, index: int) -> torch.nn.Module:
        entry = attribute(diffusion_model, self.blocks)[index]
        return getattr(entry, self.inner) if self.inner else entry

    def image_tokens(self, block_args: dict, forward):
        """Where the main image's tokens sit in the block's attention sequence: a slice, or an index tensor on the
        device where they are not contiguous."""
        raise NotImplementedError

    def side_tokens(self, block_args: dict, forward) -> dict:
        """Token groups besides the main picture that the selected layers also score against the concepts, by name:
        slices of the block's attention sequence (MiniMax H3's target audio). The family turns their scores into
        SALIENCY metadata (ModelFamily.side_metadata). None by default."""
        return {}

    def qkv(self, block: torch.nn.Module, concepts: torch.Tensor, block_args: dict, forward):
        """Concept q, k, v heads-first [Bc, H, r, D] through the block's modules, plus what update needs."""
        raise NotImplementedError

    def update(self, block: torch.nn.Module, concepts: torch.Tensor, concept_out: torch.Tensor, saved) -> torch.Tensor:
        """Concept residual after the block, from the flat concept attention output [Bc, r, H*D]."""
        raise NotImplementedError

    def space_method(self, space: str) -> str | None:
        """What a space is on these blocks, where the SALIENCY should say it (a cross-attention model's paper
        baseline or extension), else None."""
        return None

    def refusal(self, options) -> str | None:
        """Why these blocks cannot give the maps the options ask for, or None."""
        if options.space not in self.spaces:
            return (f"the {options.space!r} space has no meaning for {self.label} blocks; choose "
                    f"{' or '.join(repr(s) for s in self.spaces)}")
        return None

    def capture(self, forward, block: torch.nn.Module, layer: tuple, concept_qkv, image, previous, side: dict,
                block_args: dict | None = None):
        """The attention override that reads this block's call for the concept stream (its concept_out is None
        after the block where the block's attention was not seen). block_args: the block call's arguments."""
        return AttentionCapture(forward, layer, concept_qkv, image=image, previous=previous, side=side)

    def read_recorded(self, forward, block: torch.nn.Module, layer: tuple, concept_qkv, recorded) -> torch.Tensor:
        """A re-query's block: the concepts' attention output over the image stream an encode recorded (adding the
        layer's maps where it is selected)."""
        concept_out = read_image_stream(forward, layer, concept_qkv, recorded.blocks[layer])
        if layer in forward.selected_layers:
            for name, view in recorded.side.get(layer, {}).items():
                forward.add_side_scores(name, layer_map(forward.options, view, concept_qkv[0], concept_qkv[2],
                                                        concept_out))
        return concept_out


class TextModules(StreamKind):
    """Dual-stream blocks: the concepts pass the text's own modules (the paper's method)."""

    label = "dual-stream"

    def image_tokens(self, block_args, forward):
        # Text first, then the image, then any reference images (Flux, SD3, Qwen-Image).
        text_len = block_args["txt"].shape[1]
        return slice(text_len, text_len + forward.num_image_tokens)


class SharedWeights(StreamKind):
    """Blocks whose weights text and picture share: the concepts pass them with the text rows' modulation."""

    label = "single-stream"

    def image_tokens(self, block_args, forward):
        # The single blocks of a hybrid model keep the sequence order of its dual blocks (Flux: [text ; image],
        # HiDream: [image ; text]); a single-stream model's own blocks say where their image sits.
        return forward.main_image_tokens


class CrossAttention(StreamKind):
    """Blocks whose text enters by cross-attention only: the concepts are keys of the layer's text attention.

    There is no concept stream through the blocks (the text is embedded once and never updated, so are the
    concepts); each selected layer's map comes from the concepts' keys and the picture's queries and outputs of the
    layer's text call. A family subclasses it with text_call (which of the block's attention calls is the text's),
    concept_keys (the concepts' keys through the layer's own key projection and norm, and any modulation the layer
    gives its text) and heads.
    """

    label = "cross-attention"
    spaces = ("output", "cross_attention")

    def text_call(self, block: torch.nn.Module, block_args: dict) -> int:
        """Which of the block's attention calls (0-based, in call order) is its cross-attention over the text, in
        this call of the block (block_args: its arguments, whose options may skip an attention call)."""
        raise NotImplementedError

    def concept_keys(self, block: torch.nn.Module, concepts: torch.Tensor, block_args: dict, forward) -> torch.Tensor:
        """The concepts' keys [Bc, r, H*D] through the layer's key projection and norm, with any modulation the
        layer gives its text in this call (block_args; the conditional rows: forward.rows)."""
        raise NotImplementedError

    def heads(self, block: torch.nn.Module) -> int:
        raise NotImplementedError

    def image_tokens(self, block_args, forward):
        # The picture's tokens are the queries of the text call: the main picture first.
        return slice(0, forward.num_image_tokens)

    def space_method(self, space):
        return {"cross_attention": "the paper's cross-attention baseline: image queries . concept keys",
                "output": "an extension beyond the paper: o_i . o_c, o_c the image outputs weighted by the concept "
                          "key's attention"}.get(space)

    def refusal(self, options) -> str | None:
        if not (options.concept_self_attention and options.concept_cross_attention):
            return ("the concept self-/cross-attention switches (the paper's Table 4) have no meaning for "
                    "cross-attention blocks, where concepts are keys the picture's queries are scored against; "
                    "leave both on")
        return super().refusal(options)

    def qkv(self, block, concepts, block_args, forward):
        # Keys are needed where the layer is scored, or recorded for a re-query.
        if forward.block_key in forward.selected_layers or forward.recorder is not None:
            return (None, self.concept_keys(block, concepts, block_args, forward), None), None
        return (None, None, None), None

    def update(self, block, concepts, concept_out, saved):
        return concepts

    def capture(self, forward, block, layer, concept_qkv, image, previous, side, block_args=None):
        return CrossAttentionCapture(forward, layer, concept_qkv[1], image, self.text_call(block, block_args or {}),
                                     previous)

    def read_recorded(self, forward, block, layer, concept_qkv, recorded):
        view = recorded.blocks.get(layer)
        if view is not None and concept_qkv[1] is not None:
            read_cross_attention(forward, layer, concept_qkv[1], view, self.heads(block))
        return forward.concepts
