"""Flux.2 (dev, Klein 4B/9B): comfy's Flux class with global modulation.

Modulation: one text modulation for all double blocks, computed from the timestep (and dev's
guidance) with no pooled vector, handed to each block in `vec`; the concepts take exactly it.
Concept tokens: the pooled own tokens of the concept's templated LLM encoding (Mistral-Small-3.1
on dev, Qwen3 on Klein), then txt_in.
Positions: text tokens are numbered on RoPE axis 3. ComfyUI pads a prompt shorter than 512
tokens on the left with zeros (dev's Mistral prompts; Klein's tokenizer already pads on the right
to 512), so a concept takes the position its own tokens would have in a prompt of its own:
its index in its conditioning plus that left padding. On dev that puts it near 510, where the
authors' code places it; on Klein right after the template's opening tokens.
"""

from __future__ import annotations

import torch

from .flux import FluxFamily
from .modulation import ModulationFromBlockArguments

# model_base.Flux2.extra_conds pads shorter text conditioning on the left to this many tokens.
PADDED_TEXT_LENGTH = 512


class Flux2Family(ModulationFromBlockArguments, FluxFamily):
    name = "Flux.2"
    text_spaces = ("mistral3_24b", "qwen3_4b", "qwen3_8b")

    def matches(self, diffusion_model):
        from comfy.ldm.flux.model import Flux

        return isinstance(diffusion_model, Flux) and getattr(diffusion_model.params, "global_modulation", False)

    def concept_text_positions(self, diffusion_model, concepts):
        if concepts.positions is None or concepts.cond_lengths is None:
            return None
        left_padding = (PADDED_TEXT_LENGTH - concepts.cond_lengths).clamp(min=0)
        return concepts.positions + left_padding.to(torch.float32)
