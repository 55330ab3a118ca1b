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

from .base import TextEncoder
from .flux import FluxFamily
from .modulation import ModulationFromBlockArguments

# model_base.Flux2.extra_conds pads shorter text conditioning on the left to this many tokens.
PADDED_TEXT_LENGTH = 512


class Flux2Family(ModulationFromBlockArguments, FluxFamily):
    name = "Flux.2"
    variants = ("dev", "Klein 4B", "Klein 9B")
    encoders = (
        TextEncoder("mistral3_24b", "Mistral Small 3.1", "CLIPLoader, `flux2`", file="mistral_3_small_flux2", variant="dev"),
        TextEncoder("qwen3_4b", "Qwen3 4B", "CLIPLoader, `flux2`", file="qwen_3_4b", variant="Klein 4B"),
        TextEncoder("qwen3_8b", "Qwen3 8B", "CLIPLoader, `flux2`", file="qwen_3_8b", variant="Klein 9B"),
    )
    position = ("RoPE axis 3, where the concept's own tokens sit in a prompt of their own as ComfyUI lays it out "
                "(dev: left-padded to 512, so about 505–511; Klein: right-padded, so right after the template's "
                "opening tokens)")
    modulation = "the global text modulation (timestep, plus guidance on dev), as every block's text gets it"
    runs_on_comfyui_0_3 = False
    test_ids = ("flux2", "klein")

    def is_variant(self, diffusion_model):
        return getattr(diffusion_model.params, "global_modulation", False)

    def concept_text_positions(self, diffusion_model, concepts):
        if concepts.positions is None or concepts.cond_lengths is None:
            return None
        left_padding = (PADDED_TEXT_LENGTH - concepts.cond_lengths).clamp(min=0)
        return concepts.positions + left_padding.to(torch.float32)
