"""The interface each dual-stream model family implements.

A family adapter knows where the model keeps its dual-stream blocks and how a block's
text-stream modules turn concept vectors into q/k/v and back into an updated residual.
Everything else is shared: the attention capture (attention_capture.py), the per-forward concept
stream (forward_state.py), runs and sessions (sampling_run.py, session.py).
"""

from __future__ import annotations

from typing import Any

import torch


def comfy_class(module: str, name: str):
    """A class of ComfyUI's, or None where this ComfyUI has none (older versions lack the newer families)."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def is_instance_of(obj, module: str, name: str) -> bool:
    cls = comfy_class(module, name)
    return cls is not None and isinstance(obj, cls)


class DualStreamFamily:
    """One model family. Adapters are stateless; per-forward data lives in ForwardState."""

    name: str = ""
    #: Text-encoder state spaces the model reads (see concept_encoding): concepts must match one.
    text_spaces: tuple[str, ...] = ()
    #: Where models read one encoder at different layers of the same width: space -> the layer this model reads
    #: (text_encoders.encoder_layer), checked against the concepts' own.
    text_layers: dict = {}
    #: ModelPatcher wrapper type whose call gives this family's per-forward inputs.
    forward_wrapper_type: str = "apply_model"
    #: How the model calls its blocks when ComfyUI gives them no dit hook (block_hooks.BlockCall), else None.
    block_call = None
    #: The same for its single-stream blocks (hybrid models), else None.
    single_block_call = None
    #: What the blocks that plain layer numbers index (num_blocks, block) are, in messages: a single-stream model's
    #: main blocks carry the concept stream through their shared weights.
    block_kind: str = "dual-stream"

    def matches(self, diffusion_model: torch.nn.Module) -> bool:
        raise NotImplementedError

    def unsupported_reason(self, diffusion_model: torch.nn.Module) -> str | None:
        """A sentence saying why a model of this family's class still cannot be used, or None."""
        return None

    def num_blocks(self, diffusion_model: torch.nn.Module) -> int:
        """How many blocks plain layer numbers index: the blocks the concept stream runs through (dual-stream
        blocks; a single-stream model's main blocks)."""
        raise NotImplementedError

    def block(self, diffusion_model: torch.nn.Module, index: int) -> torch.nn.Module:
        raise NotImplementedError

    def context_dim(self, diffusion_model: torch.nn.Module) -> int:
        """Width of the text-encoder states the model takes (concept embeddings must match)."""
        raise NotImplementedError

    def token_grid(self, diffusion_model: torch.nn.Module, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the main image's token grid for a latent of this height and width."""
        raise NotImplementedError

    def token_frames(self, diffusion_model: torch.nn.Module, latent_frames: int) -> int | None:
        """Token frames of a video latent with this many latent frames, or None for a picture model.

        A video family gives its maps a time axis: the token grid is then (frames, h, w) and the maps
        [B, r, frames, h, w]. Picture models (the default) keep (h, w) even where their latent has a
        frame axis of 1 (Qwen-Image).
        """
        return None

    def pixel_frames(self, latent_frames: int, temporal_downscale: int) -> int:
        """Frames the model's VAE decodes a video latent with this many frames to.

        The default is a causal video VAE's (HunyuanVideo's): the first latent frame is one picture, each
        later one `temporal_downscale` pictures.
        """
        return (latent_frames - 1) * temporal_downscale + 1

    def image_tokens(self, block_args: dict, forward: Any):
        """Where the main image's tokens sit in the block's joint attention sequence: a slice, or an index
        tensor on the device where they are not contiguous.

        The default is text first, then the image, then any reference images (Flux, SD3, Qwen-Image).
        """
        text_len = block_args["txt"].shape[1]
        return slice(text_len, text_len + forward.num_image_tokens)

    def cacheable_block_args(self, block_args: dict) -> dict:
        """What a re-query needs of a block call's arguments to run concept_qkv again: everything but the
        streams (kept only as their shapes) and transformer_options."""
        kept = {k: v for k, v in block_args.items() if k not in ("img", "txt", "transformer_options", "pe")}
        for stream in ("img", "txt"):
            value = block_args.get(stream)
            if torch.is_tensor(value):
                kept[stream] = torch.empty(value.shape, dtype=value.dtype, device="meta")
        return kept

    def initial_concepts(self, diffusion_model: torch.nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
        """Concept residual before block 0, [r, hidden], from text-encoder embeddings [r, context_dim]."""
        raise NotImplementedError

    def forward_concepts(self, diffusion_model: torch.nn.Module, embeddings: torch.Tensor, forward: Any) -> torch.Tensor:
        """Concept residual before block 0 for this forward's conditional rows, [Bc, r, hidden].

        The default embeds the concepts once (initial_concepts) for every row. A family whose text
        embedder depends on the forward (HunyuanVideo's token refiner reads the timestep) embeds them here.
        """
        c0 = self.initial_concepts(diffusion_model, embeddings)
        return c0.unsqueeze(0).expand(forward.num_cond_rows, -1, -1).contiguous()

    def concept_text_positions(self, diffusion_model: torch.nn.Module, concepts) -> torch.Tensor | None:
        """Float [r]: the text position each concept takes, where the model gives text tokens positions.

        The default is the position its pooled tokens had in its own conditioning (ConceptSet.positions);
        a family whose model shifts text positions (e.g. left padding) maps them the same way.
        """
        return concepts.positions

    def prepare_forward(self, diffusion_model: torch.nn.Module, forward: Any, call: dict) -> None:
        """Family-specific per-forward inputs (e.g. Flux's concept modulation vector)."""

    def concept_qkv(self, block: torch.nn.Module, concepts: torch.Tensor, block_args: dict, forward: Any):
        """Concept q, k, v heads-first [Bc, H, r, D] through the block's text modules, plus what update needs."""
        raise NotImplementedError

    def update_concepts(self, block: torch.nn.Module, concepts: torch.Tensor, concept_out: torch.Tensor, saved) -> torch.Tensor:
        """Concept residual after the block, from the flat concept attention output [Bc, r, H*D]."""
        raise NotImplementedError

    # Single-stream blocks of hybrid models (an extension beyond the paper, selected by "single ..." layers): the
    # concepts go through the block's shared modules with the modulation its text rows get, and query
    # [image keys ; concept keys] in an attention of their own. The defaults mean "no single-stream blocks".

    def num_single_blocks(self, diffusion_model: torch.nn.Module) -> int:
        return 0

    def single_block(self, diffusion_model: torch.nn.Module, index: int) -> torch.nn.Module:
        raise NotImplementedError(f"{self.name} models have no single-stream blocks")

    def single_image_tokens(self, block_args: dict, forward: Any):
        """Where the main image's tokens sit in a single-stream block's joint sequence. The default is where they
        sat in the dual-stream blocks' joint attention (Flux: [text ; image], HiDream: [image ; text])."""
        return forward.double_image_tokens

    def single_concept_qkv(self, block: torch.nn.Module, concepts: torch.Tensor, block_args: dict, forward: Any):
        """As concept_qkv, through a single-stream block's shared modules."""
        raise NotImplementedError(f"{self.name} models have no single-stream blocks")

    def update_concepts_single(self, block: torch.nn.Module, concepts: torch.Tensor, concept_out: torch.Tensor,
                               saved) -> torch.Tensor:
        """As update_concepts, through a single-stream block's shared modules."""
        raise NotImplementedError(f"{self.name} models have no single-stream blocks")
