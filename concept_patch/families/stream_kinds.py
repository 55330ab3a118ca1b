"""Stream kinds: how concept rows pass one list of a model's blocks.

A family composes one stream-kind object per block list it reads (Flux: its double blocks, and its single blocks
for the opt-in 'single' layers; Z-Image: its layers). The kind says where the blocks are, how ComfyUI reaches them
(the dit hook name, or how to give blocks ComfyUI calls directly a hook) and what messages call them; the
family's subclass of it holds that block's maths:

* qkv: the concepts' q, k, v (heads-first [Bc, H, r, D]) through the block's modules, plus what update needs;
* update: the concept residual after the block, from the concepts' attention output [Bc, r, H*D];
* image_tokens: where the main picture's tokens sit in the block's attention sequence.

Two kinds exist. TextModules: dual-stream (MM-attention) blocks whose text has modules of its own, the paper's
method. SharedWeights: blocks where text and picture share every weight; the concepts take the modules with the
modulation the text rows get (the paper's method where the text has a modulation of its own, e.g. CogVideoX's
expert adaLN; otherwise an extension beyond the paper). Either way the concepts attend in an attention of their
own over the block's image keys and values: nobody attends to them, so the picture is unchanged.
"""

from __future__ import annotations

import operator

import torch

from ..stream.block_hooks import BlockCall
from ..stream.options import DOUBLE_BLOCK


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
