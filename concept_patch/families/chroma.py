"""Chroma: Flux.1's DoubleStreamBlocks without per-block modulation layers.

Chroma computes every block's modulation from timestep and guidance alone (its distilled
guidance layer; there is no pooled CLIP vector), and hands the text stream's share to each
block in `vec`. The concepts take exactly that text modulation, which is what Flux.1's
concept modulation (pooled vector zeroed) amounts to. Text ids are zero, so are the concepts'.
Everything else is as for Flux.1.
"""

from __future__ import annotations

from .flux import FluxFamily
from .modulation import ModulationFromBlockArguments


class ChromaFamily(ModulationFromBlockArguments, FluxFamily):
    name = "Chroma"
    text_spaces = ("t5xxl",)

    def matches(self, diffusion_model):
        from comfy.ldm.chroma.model import Chroma

        return type(diffusion_model) is Chroma  # Chroma Radiance (a subclass) has its own adapter

    def text_id_axes(self, diffusion_model, block_args):
        return []
